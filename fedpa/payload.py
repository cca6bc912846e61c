"""Tensors on the wire: safetensors bytes of float32 numpy arrays (torch-free).

Both directions (shared state down, update deltas up) use this one format, so the server, the
Python edge client and the Android app read and write the same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load, save

from fedpa.errors import PayloadError

__all__ = ["decode_tensors", "encode_tensors", "payload_nbytes"]


def encode_tensors(tensors: Mapping[str, np.ndarray], *, metadata: Mapping[str, str] | None = None) -> bytes:
    """Serialise named arrays (contiguous, as given) with optional string metadata."""
    arrays = {name: np.ascontiguousarray(array) for name, array in tensors.items()}
    return save(arrays, metadata=dict(metadata) if metadata else None)


def decode_tensors(data: bytes, *, max_bytes: int | None = None) -> dict[str, np.ndarray]:
    """Parse a safetensors body, refusing oversized or corrupt input with a precise message."""
    if max_bytes is not None and len(data) > max_bytes:
        raise PayloadError(f"payload of {len(data)} bytes exceeds the limit of {max_bytes} bytes")
    try:
        return dict(load(bytes(data)))
    except (SafetensorError, ValueError, TypeError) as exc:
        raise PayloadError(f"payload is not valid safetensors: {exc}") from exc


def payload_nbytes(tensors: Mapping[str, np.ndarray]) -> int:
    """Exact size on the wire of ``encode_tensors(tensors)``."""
    return len(encode_tensors(tensors))

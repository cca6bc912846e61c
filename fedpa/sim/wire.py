"""What an upload costs on the wire, and what compressing it does to the numbers the server sees.

The protocol's payload is safetensors of float32 arrays (``fedpa.payload``). To measure the
communication/utility trade-off (issue target: ≤ ¼ of the research code's 4,493 fp32 floats per
upload) this module adds two lossy encodings and a packed layout:

* ``fp16`` — each tensor as float16;
* ``int8`` — symmetric per-tensor quantisation ``q = round(Δ / s)``, ``s = max|Δ| / 127``, with the
  scales in the safetensors metadata;
* ``packed`` — all of a client's tensors concatenated, in the spec's order, into one array: the
  server knows the order from the manifest, so the per-tensor JSON header (≈ 90 bytes a tensor,
  as large as the data for small adapters) is paid once.

:func:`quantize` applies an encoding to stacked per-client deltas in torch; it equals
``decode_update(encode_update(·))`` per client (``tests/fedpa/sim/test_wire.py``), so the simulation
trains on exactly what a server would decode. These encodings are a measurement for now: the
aggregator's validator accepts float32 payloads only (docs/design.md §7).

Usage: ``nbytes = len(encode_update(deltas, "int8", packed=True))``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from fedpa.errors import ConfigError, PayloadError
from fedpa.payload import decode_tensors, encode_tensors

__all__ = ["WIRE_DTYPES", "WireDtype", "decode_update", "encode_update", "quantize"]

WireDtype = Literal["fp32", "fp16", "int8"]
WIRE_DTYPES: tuple[str, ...] = ("fp32", "fp16", "int8")
_PACKED = "update"  # the one tensor of a packed payload
_META = "fedpa.wire"


def _check(dtype: str) -> None:
    if dtype not in WIRE_DTYPES:
        raise ConfigError(f"wire dtype must be one of {WIRE_DTYPES}, got {dtype!r}")


def _scale(a: np.ndarray) -> np.float32:
    peak = np.float32(np.abs(a).max()) if a.size else np.float32(0)
    return np.float32(peak / np.float32(127)) if peak > 0 else np.float32(1)


def encode_update(deltas: Mapping[str, np.ndarray], dtype: WireDtype = "fp32", *, packed: bool = False) -> bytes:
    """Serialise one client's float32 deltas; fp32 unpacked is byte-for-byte the protocol's payload.

    Packed: one ``update`` array (the tensors flattened, in the given order — the spec's) plus, for
    int8, one float32 ``scales`` array; names and shapes are not sent (the server has the spec).
    """
    _check(dtype)
    if dtype == "fp32" and not packed:
        return encode_tensors(deltas)
    names = list(deltas)
    arrays: dict[str, np.ndarray] = {}
    scales: dict[str, float] = {}
    for name in names:
        a = np.asarray(deltas[name], np.float32)
        if dtype == "fp16":
            arrays[name] = a.astype(np.float16)
        elif dtype == "int8":
            s = _scale(a)
            scales[name] = float(s)
            arrays[name] = np.clip(np.rint(a / s), -127, 127).astype(np.int8)
        else:
            arrays[name] = a
    meta: dict[str, object] = {"dtype": dtype, "packed": packed}
    if packed:
        arrays = {_PACKED: np.concatenate([arrays[n].ravel() for n in names])} if names else {}
        if dtype == "int8":
            arrays["scales"] = np.array([scales[n] for n in names], np.float32)
    elif dtype == "int8":
        meta["scales"] = scales
    return encode_tensors(arrays, metadata={_META: json.dumps(meta, separators=(",", ":"))})


def decode_update(data: bytes, layout: list[tuple[str, tuple[int, ...]]] | None = None) -> dict[str, np.ndarray]:
    """Inverse of :func:`encode_update` (float32 out); a packed payload needs ``layout`` (names, shapes)."""
    arrays = decode_tensors(data)
    header_len = int.from_bytes(data[:8], "little")  # safetensors: u64 header size, then the JSON header
    meta_text = (json.loads(data[8 : 8 + header_len]).get("__metadata__") or {}).get(_META)
    if meta_text is None:  # plain fp32 protocol payload
        return {n: a.astype(np.float32) for n, a in arrays.items()}
    meta = json.loads(meta_text)
    if meta["packed"]:
        if layout is None:
            raise PayloadError("a packed update carries no names or shapes: pass the spec's layout")
        sizes = [int(np.prod(shape, dtype=np.int64)) for _, shape in layout]
        flat = arrays.get(_PACKED, np.zeros(0, np.float32))
        if flat.size != sum(sizes):
            raise PayloadError(f"packed update has {flat.size} values, the layout needs {sum(sizes)}")
        pieces = np.split(flat, np.cumsum(sizes)[:-1]) if sizes else []
        scale_of = dict(zip([n for n, _ in layout], arrays.get("scales", np.ones(len(layout))), strict=True))
        arrays = {n: p.reshape(shape) for (n, shape), p in zip(layout, pieces, strict=True)}
    else:
        scale_of = meta.get("scales", {})
    if meta["dtype"] == "int8":
        return {n: a.astype(np.float32) * np.float32(scale_of[n]) for n, a in arrays.items()}
    return {n: a.astype(np.float32) for n, a in arrays.items()}


def quantize(delta: Tensor, dtype: WireDtype) -> Tensor:
    """What the server decodes from each client's ``delta[i]`` (one tensor, stacked ``[U, ...]``)."""
    _check(dtype)
    if dtype == "fp32":
        return delta
    if dtype == "fp16":
        return delta.half().float()
    flat = delta.flatten(1)
    peak = flat.abs().amax(1) if flat.shape[1] else torch.zeros(flat.shape[0])
    scale = torch.where(peak > 0, peak / torch.tensor(127, dtype=torch.float32), torch.ones_like(peak))
    q = torch.clamp(torch.round(flat / scale[:, None]), -127, 127)
    return (q * scale[:, None]).view_as(delta)

"""Upload validation: everything decided without the database, before an upload is queued.

Order (each refusal stores nothing; the intake charges it a rate-limit token): the safetensors
header is small JSON of numpy-loadable tensors with at most ``max_metadata_bytes`` of metadata →
the metadata parses as ``UpdateMeta`` → versions fit their 32-bit columns and privacy numbers are
finite (``check_ranges``, before the catalog look-up) → the model version is known → the
example count is within the model's ``max_example_count`` → tensors are exactly this device's
share of the manifest (names, shapes, float32, finite: ``SharedStateSpec.validate``) → the
declared privacy meets the manifest's policy (``check_privacy``).

Because everything the batch INSERT could fail on (an out-of-range integer, an over-long string)
is refused here, no upload's content can make the batch's transaction fail and roll back other
devices' uploads (issue 16; measured against a per-upload SAVEPOINT in docs/aggregator.md).

Usage: ``meta, arrays = parse_update(body); check_update(info, meta, arrays)``.
"""

from __future__ import annotations

import json
import math

import numpy as np
from pydantic import ValidationError

from aggregator.core.errors import Unprocessable
from aggregator.services.catalog import ModelInfo
from fedpa.errors import PayloadError
from fedpa.manifest import PrivacySettings
from fedpa.payload import decode_tensors
from fedpa.protocol import UpdateMeta, UpdatePrivacy

__all__ = ["INT32_MAX", "META_KEY", "check_privacy", "check_ranges", "check_update", "groups_key", "parse_update",
           "read_metadata"]

META_KEY = "fedpa.update"  # safetensors __metadata__ key holding the UpdateMeta JSON
_MAX_HEADER = 1 << 20
INT32_MAX = 2**31 - 1  # versions are stored in 32-bit columns
# Tensor dtypes safetensors.numpy can load; others (BF16, F8_*) are refused with a precise 422.
_NUMPY_DTYPES = frozenset({"BOOL", "U8", "I8", "U16", "I16", "F16", "U32", "I32", "F32", "U64", "I64", "F64"})



def read_metadata(body: bytes, *, max_metadata_bytes: int = 16384) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors body (safetensors' own loader does not return it).

    Also refuses what safetensors.numpy cannot load (a BF16 tensor raised KeyError inside it: a
    500) and JSON nested deeper than Python's parser recurses (RecursionError: a 500), and
    metadata over ``max_metadata_bytes`` (junk padding that would be stored with the update).
    """
    if len(body) < 8:
        raise PayloadError(f"payload of {len(body)} bytes is not safetensors (no header)")
    n = int.from_bytes(body[:8], "little")
    if n > min(len(body) - 8, _MAX_HEADER):
        raise PayloadError(f"safetensors header length {n} exceeds the payload or {_MAX_HEADER} bytes")
    try:
        header = json.loads(body[8 : 8 + n])
    except (UnicodeDecodeError, ValueError) as exc:
        raise PayloadError(f"safetensors header is not JSON: {exc}") from exc
    except RecursionError:
        raise PayloadError("safetensors header is nested too deeply to be a tensor index") from None
    if not isinstance(header, dict):
        raise PayloadError("safetensors header must be a JSON object")
    meta = header.get("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise PayloadError("safetensors __metadata__ must map strings to strings")
    size = sum(len(k.encode()) + len(v.encode()) for k, v in meta.items())
    if size > max_metadata_bytes:
        raise PayloadError(f"safetensors __metadata__ of {size} bytes exceeds the limit of {max_metadata_bytes} bytes")
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        dtype = entry.get("dtype") if isinstance(entry, dict) else None
        if dtype not in _NUMPY_DTYPES:
            raise PayloadError(f"tensor {name!r} has dtype {dtype!r}; updates are float32 (F32)")
    return meta


def parse_update(body: bytes, *, max_metadata_bytes: int = 16384) -> tuple[UpdateMeta, dict[str, np.ndarray]]:
    """Metadata (``fedpa.update`` → UpdateMeta) and the delta arrays of one upload body."""
    raw = read_metadata(body, max_metadata_bytes=max_metadata_bytes).get(META_KEY)
    if raw is None:
        raise PayloadError(f"the safetensors __metadata__ has no {META_KEY!r} entry (UpdateMeta JSON)")
    try:
        meta = UpdateMeta.model_validate_json(raw)
    except ValidationError as exc:
        parts = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise PayloadError(f"invalid {META_KEY} metadata: {parts}") from exc
    return meta, decode_tensors(body)


def groups_key(groups: dict[str, int]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(groups.items()))


def check_ranges(meta: UpdateMeta, *, max_example_count: int | None = None) -> None:
    """Every number of the metadata within what the model accepts and the database can store.

    An ``example_count`` of 2^63 or a ``base_version`` of 2^31 used to pass here and fail the
    batch's INSERT, rolling back every other device's upload with it.
    """
    for name, value in (("model_version", meta.model_version), ("base_version", meta.base_version)):
        if value > INT32_MAX:
            raise Unprocessable(f"{name} {value} is out of range (at most {INT32_MAX})", code="out_of_range")
    if max_example_count is not None and meta.example_count > max_example_count:
        raise Unprocessable(f"example_count {meta.example_count} exceeds this model's max_example_count "
                            f"{max_example_count}", code="out_of_range")
    p = meta.privacy
    for name in ("clip_norm", "noise_multiplier", "epsilon_spent", "delta"):
        value = getattr(p, name)
        if not math.isfinite(value):
            raise Unprocessable(f"privacy.{name} must be finite, got {value}", code="invalid_privacy")


def check_privacy(declared: UpdatePrivacy, policy: PrivacySettings) -> None:
    """Refuse an update whose declared LDP is weaker than the model's policy (docs/design.md §4).

    The server cannot verify noise; it can refuse a device that says it used less of it: another
    mechanism, a smaller noise multiplier σ, a larger clip norm C (devices may clip tighter, never
    looser: the aggregator's norm bound assumes C), a larger δ, or more ε spent than the budget.
    """
    if policy.mechanism == "none":
        return
    if declared.mechanism != policy.mechanism or declared.noise_multiplier < policy.noise_multiplier:
        raise Unprocessable(
            f"declared privacy {declared.mechanism} with noise_multiplier {declared.noise_multiplier} is weaker "
            f"than the model's {policy.mechanism} with noise_multiplier {policy.noise_multiplier}",
            code="privacy_below_floor")
    if declared.clip_norm > policy.clip_norm:
        raise Unprocessable(f"declared clip_norm {declared.clip_norm} exceeds the model's clip_norm {policy.clip_norm}",
                            code="privacy_below_floor")
    if declared.delta > policy.delta:
        raise Unprocessable(f"declared delta {declared.delta} exceeds the model's delta {policy.delta}",
                            code="privacy_below_floor")
    budget = policy.epsilon_budget
    if budget is not None and declared.epsilon_spent > budget:
        raise Unprocessable(f"declared epsilon_spent {declared.epsilon_spent} exceeds the model's epsilon_budget "
                            f"{budget}", code="privacy_budget_exceeded")


def check_update(info: ModelInfo, meta: UpdateMeta, arrays: dict[str, np.ndarray]) -> None:
    """Everything that can be checked without the database: ranges, tensors and declared privacy."""
    check_ranges(meta, max_example_count=info.config.max_example_count)
    info.spec.validate(arrays, groups=meta.groups)
    if info.config.enforce_privacy:
        check_privacy(meta.privacy, info.privacy)

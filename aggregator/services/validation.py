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

The first two steps are the wire contract's decoding (``fedpa.wire.decode_update``), shared with
every client; the rest is the server's policy.

Usage: ``meta, arrays = decode_update(body); check_update(info, meta, arrays)``.
"""

from __future__ import annotations

import math

import numpy as np

from aggregator.core.errors import Unprocessable
from aggregator.services.catalog import ModelInfo
from fedpa.manifest import PrivacySettings
from fedpa.protocol import UpdateMeta, UpdatePrivacy
from fedpa.wire import ErrorCode

__all__ = ["INT32_MAX", "check_privacy", "check_ranges", "check_update"]

INT32_MAX = 2**31 - 1  # versions are stored in 32-bit columns


def check_ranges(meta: UpdateMeta, *, max_example_count: int | None = None) -> None:
    """Every number of the metadata within what the model accepts and the database can store.

    An ``example_count`` of 2^63 or a ``base_version`` of 2^31 used to pass here and fail the
    batch's INSERT, rolling back every other device's upload with it.
    """
    for name, value in (("model_version", meta.model_version), ("base_version", meta.base_version)):
        if value > INT32_MAX:
            raise Unprocessable(f"{name} {value} is out of range (at most {INT32_MAX})", code=ErrorCode.OUT_OF_RANGE)
    if max_example_count is not None and meta.example_count > max_example_count:
        raise Unprocessable(f"example_count {meta.example_count} exceeds this model's max_example_count "
                            f"{max_example_count}", code=ErrorCode.OUT_OF_RANGE)
    p = meta.privacy
    for name in ("clip_norm", "noise_multiplier", "epsilon_spent", "delta"):
        value = getattr(p, name)
        if not math.isfinite(value):
            raise Unprocessable(f"privacy.{name} must be finite, got {value}", code=ErrorCode.INVALID_PRIVACY)


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
            code=ErrorCode.PRIVACY_BELOW_FLOOR)
    if declared.clip_norm > policy.clip_norm:
        raise Unprocessable(f"declared clip_norm {declared.clip_norm} exceeds the model's clip_norm {policy.clip_norm}",
                            code=ErrorCode.PRIVACY_BELOW_FLOOR)
    if declared.delta > policy.delta:
        raise Unprocessable(f"declared delta {declared.delta} exceeds the model's delta {policy.delta}",
                            code=ErrorCode.PRIVACY_BELOW_FLOOR)
    budget = policy.epsilon_budget
    if budget is not None and declared.epsilon_spent > budget:
        raise Unprocessable(f"declared epsilon_spent {declared.epsilon_spent} exceeds the model's epsilon_budget "
                            f"{budget}", code=ErrorCode.PRIVACY_BUDGET_EXCEEDED)


def check_update(info: ModelInfo, meta: UpdateMeta, arrays: dict[str, np.ndarray]) -> None:
    """Everything that can be checked without the database: ranges, tensors and declared privacy."""
    check_ranges(meta, max_example_count=info.config.max_example_count)
    info.spec.validate(arrays, groups=meta.groups)
    if info.config.enforce_privacy:
        check_privacy(meta.privacy, info.privacy)

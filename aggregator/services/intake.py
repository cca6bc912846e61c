"""Update intake: validate everything, then store durably in one short transaction.

Order of checks (each refusal stores nothing): metadata parses as ``UpdateMeta`` and names this
model → the model version is known → tensors are exactly this device's share of the manifest
(names, shapes, float32, finite: ``SharedStateSpec.validate``) → declared privacy is at least
the manifest's → *in the transaction*: rate limit (device token bucket), the base version is
current (sync) or not too stale (async), and the nonce is new (unique constraint). The commit
happens before the handler answers 202, so an accepted update survives a crash.

Usage: ``receipt = accept_update(db, catalog, device, "m1", body, limits=limits)``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import numpy as np
from pydantic import ValidationError

from aggregator.core.errors import ConflictError, RateLimited, Unprocessable
from aggregator.db import Database, RawTransaction
from aggregator.schemas import UpdateAccepted
from aggregator.services.catalog import Catalog, ModelInfo, model_version_conflict
from aggregator.services.devices import DeviceAuth
from fedpa.errors import PayloadError
from fedpa.manifest import PrivacySettings
from fedpa.payload import decode_tensors
from fedpa.protocol import UpdateMeta, UpdatePrivacy

__all__ = ["META_KEY", "Limits", "accept_update", "groups_key", "parse_update", "read_metadata"]

META_KEY = "fedpa.update"  # safetensors __metadata__ key holding the UpdateMeta JSON
_MAX_HEADER = 1 << 20


@dataclass(frozen=True)
class Limits:
    """Rate limit of one device (token bucket); ``per_minute == 0`` disables it."""

    per_minute: float = 60.0
    burst: int = 10


def read_metadata(body: bytes) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors body (safetensors' own loader does not return it)."""
    if len(body) < 8:
        raise PayloadError(f"payload of {len(body)} bytes is not safetensors (no header)")
    n = int.from_bytes(body[:8], "little")
    if n > min(len(body) - 8, _MAX_HEADER):
        raise PayloadError(f"safetensors header length {n} exceeds the payload or {_MAX_HEADER} bytes")
    try:
        header = json.loads(body[8 : 8 + n])
    except (UnicodeDecodeError, ValueError) as exc:
        raise PayloadError(f"safetensors header is not JSON: {exc}") from exc
    meta = header.get("__metadata__", {}) if isinstance(header, dict) else None
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise PayloadError("safetensors __metadata__ must map strings to strings")
    return meta


def parse_update(body: bytes) -> tuple[UpdateMeta, dict[str, np.ndarray]]:
    """Metadata (``fedpa.update`` → UpdateMeta) and the delta arrays of one upload body."""
    raw = read_metadata(body).get(META_KEY)
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


def check_privacy(declared: UpdatePrivacy, floor: PrivacySettings) -> None:
    """Refuse an update whose declared LDP is weaker than the model asks for (SPEC §4).

    The server cannot verify noise; it can refuse a device that says it used less of it.
    """
    if floor.mechanism == "none":
        return
    if declared.mechanism != floor.mechanism or declared.noise_multiplier < floor.noise_multiplier:
        raise Unprocessable(
            f"declared privacy {declared.mechanism} with noise_multiplier {declared.noise_multiplier} is weaker "
            f"than the model's {floor.mechanism} with noise_multiplier {floor.noise_multiplier}",
            code="privacy_below_floor")


# The hot path's SQL, written once (``:name`` placeholders; see Database.raw for why not the ORM).
_TAKE_TOKEN = """
UPDATE devices SET
    bucket_tokens = (CASE WHEN bucket_tokens + (:now - bucket_at) * :rate > :burst THEN :burst
                     ELSE bucket_tokens + (:now - bucket_at) * :rate END) - 1.0,
    bucket_at = :now
WHERE id = :device_pk
  AND (CASE WHEN bucket_tokens + (:now - bucket_at) * :rate > :burst THEN :burst
       ELSE bucket_tokens + (:now - bucket_at) * :rate END) >= 1.0
"""
_INSERT = """
INSERT INTO updates (model_pk, model_version, device_pk, nonce, base_version, round, groups_key,
                     example_count, privacy_json, tensors, nbytes, received_at, status)
SELECT :model_pk, :model_version, :device_pk, :nonce, :base_version, m.round, :groups_key,
       :example_count, :privacy_json, :tensors, :nbytes, :received_at, 'pending'
FROM models m
WHERE m.id = :model_pk AND m.model_version = :model_version AND {fresh}
RETURNING id, round
"""
_INSERT_SYNC = _INSERT.format(fresh="m.state_version = :base_version")
_INSERT_ASYNC = _INSERT.format(
    fresh="m.state_version >= :base_version AND m.state_version - :base_version <= :max_staleness")
_CURRENT = "SELECT model_version, state_version FROM models WHERE id = :model_pk"
_SEEN = "SELECT 1 FROM updates WHERE model_pk = :model_pk AND nonce = :nonce"


def _take_token(tx: RawTransaction, device_pk: int, limits: Limits, now: float) -> None:
    rate = limits.per_minute / 60.0
    params = {"now": now, "rate": rate, "burst": float(limits.burst), "device_pk": device_pk}
    if tx.execute(_TAKE_TOKEN, params).rowcount != 1:  # type: ignore[attr-defined]
        raise RateLimited(f"device rate limit of {limits.per_minute:g} uploads/minute (burst {limits.burst}) "
                          f"exceeded", retry_after_s=1.0 / rate)


def _replay(model_id: str, nonce: str) -> ConflictError:
    return ConflictError(f"nonce {nonce!r} was already used for model {model_id!r} (replay)", code="replayed_nonce")


def _diagnose(tx: RawTransaction, info: ModelInfo, meta: UpdateMeta) -> ConflictError:
    """Why the guarded insert matched no row: a replay, another model version, or a stale base.

    A replay is reported first even when the round has moved on since: the device must learn
    that the server holds its update (and not retrain and resend it as new).
    """
    if tx.execute(_SEEN, {"model_pk": info.pk, "nonce": meta.nonce}).fetchone() is not None:  # type: ignore[attr-defined]
        return _replay(info.model_id, meta.nonce)
    model_version, state_version = tx.execute(_CURRENT, {"model_pk": info.pk}).fetchone()  # type: ignore[attr-defined]
    if model_version != meta.model_version:
        return model_version_conflict(info.model_id, meta.model_version, model_version)
    if info.config.mode == "sync":
        detail = (f"base_version {meta.base_version} is stale: the current shared state is version "
                  f"{state_version}; download it and train again")
    else:
        detail = (f"base_version {meta.base_version} is outside the accepted window "
                  f"[{state_version - info.config.max_staleness}, {state_version}]")
    return ConflictError(detail, code="stale_base")


def accept_update(db: Database, catalog: Catalog, device: DeviceAuth, model_id: str, body: bytes, *,
                  limits: Limits, now: float | None = None) -> UpdateAccepted:
    """Validate one upload and commit it; raises a FedPAError subclass (→ 4xx) on any refusal."""
    meta, arrays = parse_update(body)
    if meta.model_id != model_id:
        raise Unprocessable(f"metadata model_id {meta.model_id!r} does not match the URL's {model_id!r}",
                            code="model_id_mismatch")
    info = catalog.cached(model_id, meta.model_version)
    if info is None:
        with db.sessions() as session:
            info = catalog.version(session, model_id, meta.model_version)
    info.spec.validate(arrays, groups=meta.groups)
    if info.config.enforce_privacy:
        check_privacy(meta.privacy, info.privacy)
    now = time.time() if now is None else now
    sync = info.config.mode == "sync"
    params = {
        "model_pk": info.pk, "model_version": meta.model_version, "device_pk": device.pk, "nonce": meta.nonce,
        "base_version": meta.base_version, "groups_key": groups_key(meta.groups),
        "example_count": meta.example_count, "privacy_json": meta.privacy.model_dump_json(), "tensors": body,
        "nbytes": len(body), "received_at": now, "max_staleness": info.config.max_staleness,
    }
    if sync:
        del params["max_staleness"]
    try:
        with db.raw() as tx:
            if sync:  # held until commit: an aggregation cannot close the round under us
                db.lock_round(tx, info.pk, exclusive=False)
            if limits.per_minute > 0:
                _take_token(tx, device.pk, limits, now)
            row = tx.execute(_INSERT_SYNC if sync else _INSERT_ASYNC, params).fetchone()  # type: ignore[attr-defined]
            if row is None:
                raise _diagnose(tx, info, meta)
    except db.integrity_error as exc:
        if "nonce" not in str(exc):
            raise
        raise _replay(model_id, meta.nonce) from exc
    # round r trains on state version r, so the receipt's state version is the round's base.
    update_id, round_ = row
    return UpdateAccepted(update_id=update_id, state_version=round_, round=round_)

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
from sqlalchemy import case, insert, literal, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from aggregator.core.errors import ConflictError, RateLimited, Unprocessable
from aggregator.db import Database
from aggregator.models import Device, Model, Update
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


def _take_token(session: Session, device_pk: int, limits: Limits, now: float) -> None:
    rate = limits.per_minute / 60.0
    level = Device.bucket_tokens + (now - Device.bucket_at) * rate
    refilled = case((level > limits.burst, float(limits.burst)), else_=level)
    taken = session.execute(update(Device).where(Device.id == device_pk, refilled >= 1.0)
                            .values(bucket_tokens=refilled - 1.0, bucket_at=now)).rowcount
    if not taken:
        raise RateLimited(f"device rate limit of {limits.per_minute:g} uploads/minute (burst {limits.burst}) "
                          f"exceeded", retry_after_s=1.0 / rate)


def _diagnose(session: Session, info: ModelInfo, meta: UpdateMeta) -> ConflictError:
    """Why the guarded insert matched no row: another model version, or a stale base."""
    row = session.execute(select(Model.model_version, Model.state_version).where(Model.id == info.pk)).one()
    if row.model_version != meta.model_version:
        return model_version_conflict(info.model_id, meta.model_version, row.model_version)
    if info.config.mode == "sync":
        detail = (f"base_version {meta.base_version} is stale: the current shared state is version "
                  f"{row.state_version}; download it and train again")
    else:
        detail = (f"base_version {meta.base_version} is outside the accepted window "
                  f"[{row.state_version - info.config.max_staleness}, {row.state_version}]")
    return ConflictError(detail, code="stale_base")


def accept_update(db: Database, catalog: Catalog, device: DeviceAuth, model_id: str, body: bytes, *,
                  limits: Limits, now: float | None = None) -> UpdateAccepted:
    """Validate one upload and commit it; raises a FedPAError subclass (→ 4xx) on any refusal."""
    meta, arrays = parse_update(body)
    if meta.model_id != model_id:
        raise Unprocessable(f"metadata model_id {meta.model_id!r} does not match the URL's {model_id!r}",
                            code="model_id_mismatch")
    with db.sessions() as session:  # only touches the database on a cache miss
        info = catalog.version(session, model_id, meta.model_version)
    info.spec.validate(arrays, groups=meta.groups)
    if info.config.enforce_privacy:
        check_privacy(meta.privacy, info.privacy)
    now = time.time() if now is None else now
    cfg = info.config
    if cfg.mode == "sync":
        fresh = Model.state_version == meta.base_version
    else:
        fresh = (Model.state_version >= meta.base_version) & (
            Model.state_version - meta.base_version <= cfg.max_staleness)
    columns = {
        "model_pk": literal(info.pk), "model_version": literal(meta.model_version), "device_pk": literal(device.pk),
        "nonce": literal(meta.nonce), "base_version": literal(meta.base_version), "round": Model.round,
        "groups_key": literal(groups_key(meta.groups)), "example_count": literal(meta.example_count),
        "privacy_json": literal(meta.privacy.model_dump_json()), "tensors": literal(body),
        "nbytes": literal(len(body)), "received_at": literal(now), "status": literal("pending"),
    }
    stmt = (insert(Update)
            .from_select(list(columns), select(*columns.values()).where(
                Model.id == info.pk, Model.model_version == meta.model_version, fresh))
            .returning(Update.id, Update.round))
    try:
        with db.begin() as session:
            if cfg.mode == "sync":
                db.lock_round(session, info.pk, exclusive=False)
            if limits.per_minute > 0:
                _take_token(session, device.pk, limits, now)
            row = session.execute(stmt).one_or_none()
            if row is None:
                raise _diagnose(session, info, meta)
    except IntegrityError as exc:
        if "nonce" not in str(exc.orig):
            raise
        raise ConflictError(f"nonce {meta.nonce!r} was already used for model {model_id!r} (replay)",
                            code="replayed_nonce") from exc
    # round r trains on state version r, so the receipt's state version is the round's base.
    return UpdateAccepted(update_id=row.id, state_version=row.round, round=row.round)

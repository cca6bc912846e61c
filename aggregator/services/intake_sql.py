"""The intake's transaction: store a batch of validated uploads in one SQL script (either driver).

A batch is stored in "waves" of at most one upload per device, two statements per wave: one
INSERT of every upload that passes the checks needing the database — model version, fresh base,
a new nonce, a token in the device's bucket (read only) — then one UPDATE taking the tokens. A
refusal is a row that was not inserted (no error, no savepoint), so the transaction goes on and
each upload gets its own verdict; ``_diagnose`` then says why (replay, model version, stale base,
no token). A refused upload (422, 409) still costs the device a rate-limit token, taken in the
same transaction, so a device sending garbage is throttled like one sending too much.

The script is a generator of ``(sql, params)`` (``aggregator.db.Script``) so that the one text
runs on a blocking SQLAlchemy connection (``db.run``) and on the committer's event-loop
connection alike (see ``Database.run`` for why not the ORM on this path).

Usage: ``outcomes = store_updates(db, batch, limits=Limits())`` (blocking), or
``await connection.run(store_script(db, batch, limits=limits, now=time.time()))``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from aggregator.core.errors import ConflictError, RateLimited
from aggregator.db import Database, Script
from aggregator.schemas import UpdateAccepted
from aggregator.services.catalog import ModelInfo, model_version_conflict
from fedpa.errors import FedPAError
from fedpa.protocol import UpdateMeta
from fedpa.wire import ErrorCode

__all__ = ["Limits", "Outcome", "PendingUpdate", "groups_key", "store_script", "store_updates"]


@dataclass(frozen=True)
class Limits:
    """Rate limit of one device (token bucket); ``per_minute == 0`` disables it."""

    per_minute: float = 60.0
    burst: int = 10


@dataclass(frozen=True)
class PendingUpdate:
    """A validated upload waiting for its transaction — or a refused one, only to take its rate-limit token."""

    info: ModelInfo | None
    meta: UpdateMeta | None
    device_pk: int
    body: bytes
    received_at: float
    refusal: FedPAError | None = None  # set: store nothing, charge a token, answer this (or 429)


def groups_key(groups: dict[str, int]) -> str:
    """The ``updates.groups_key`` column: ``attr=value,…`` sorted (the round groups uploads by it)."""
    return ",".join(f"{k}={v}" for k, v in sorted(groups.items()))


# The hot path's SQL (``:name`` placeholders); the waves are described in the module docstring.
_REFILLED = """(CASE WHEN d.bucket_tokens + (:now - d.bucket_at) * :rate > :burst THEN :burst
      ELSE d.bucket_tokens + (:now - d.bucket_at) * :rate END)"""
_COLUMNS = ("model_pk", "model_version", "device_pk", "nonce", "base_version", "groups_key", "example_count",
            "privacy_json", "tensors", "nbytes", "received_at", "max_staleness")
_CURRENT = "SELECT model_version, state_version FROM models WHERE id = :model_pk"
_SEEN = "SELECT 1 FROM updates WHERE model_pk = :model_pk AND nonce = :nonce"


@lru_cache(maxsize=256)
def _insert_sql(n: int, limited: bool) -> str:
    """INSERT of ``n`` uploads (``:column_i`` parameters); a synchronous round has max_staleness 0."""
    rows = ", ".join("(" + ", ".join(f":{c}_{i}" for c in _COLUMNS) + ")" for i in range(n))
    return f"""
WITH v ({", ".join(_COLUMNS)}) AS (VALUES {rows})
INSERT INTO updates (model_pk, model_version, device_pk, nonce, base_version, round, groups_key,
                     example_count, privacy_json, tensors, nbytes, received_at, status)
SELECT v.model_pk, v.model_version, v.device_pk, v.nonce, v.base_version, m.round, v.groups_key,
       v.example_count, v.privacy_json, v.tensors, v.nbytes, v.received_at, 'pending'
FROM v JOIN models m ON m.id = v.model_pk JOIN devices d ON d.id = v.device_pk
WHERE m.model_version = v.model_version AND m.state_version >= v.base_version
  AND m.state_version - v.base_version <= v.max_staleness AND {f"{_REFILLED} >= 1.0" if limited else "1 = 1"}
ON CONFLICT (model_pk, nonce) DO NOTHING
RETURNING device_pk, id, round
"""


@lru_cache(maxsize=256)
def _take_tokens_sql(n: int) -> str:
    devices = ", ".join(f":device_{i}" for i in range(n))
    return f"""
UPDATE devices AS d SET bucket_tokens = {_REFILLED} - 1.0, bucket_at = :now
WHERE d.id IN ({devices}) AND {_REFILLED} >= 1.0
RETURNING id
"""


@lru_cache(maxsize=256)
def _undo_sql(n: int) -> str:
    return f"DELETE FROM updates WHERE id IN ({', '.join(f':id_{i}' for i in range(n))})"


def _rate_limited(limits: Limits) -> RateLimited:
    return RateLimited(f"device rate limit of {limits.per_minute:g} uploads/minute (burst {limits.burst}) "
                       f"exceeded", retry_after_s=60.0 / limits.per_minute)


Outcome = UpdateAccepted | FedPAError


def _diagnose(update: PendingUpdate, limits: Limits) -> Script[FedPAError]:
    """Why an upload was not inserted: a replay, another model version, a stale base, or no token.

    A replay is reported first even when the round has moved on since: the device must learn
    that the server holds its update (and not retrain and resend it as new).
    """
    info, meta = update.info, update.meta
    assert info is not None and meta is not None
    if (yield _SEEN, {"model_pk": info.pk, "nonce": meta.nonce}):
        return ConflictError(f"nonce {meta.nonce!r} was already used for model {info.model_id!r} (replay)",
                             code=ErrorCode.REPLAYED_NONCE)
    [(model_version, state_version)] = yield _CURRENT, {"model_pk": info.pk}
    if model_version != meta.model_version:
        return model_version_conflict(info.model_id, meta.model_version, model_version)
    config = info.config
    if config.mode == "sync" and meta.base_version != state_version:
        return ConflictError(f"base_version {meta.base_version} is stale: the current shared state is version "
                             f"{state_version}; download it and train again", code=ErrorCode.STALE_BASE)
    if config.mode == "async" and not 0 <= state_version - meta.base_version <= config.max_staleness:
        return ConflictError(f"base_version {meta.base_version} is outside the accepted window "
                             f"[{state_version - config.max_staleness}, {state_version}]", code=ErrorCode.STALE_BASE)
    return _rate_limited(limits)


def _store_wave(wave: Sequence[PendingUpdate], limits: Limits, now: float) -> Script[list[Outcome]]:
    """Uploads of distinct devices: one INSERT, one UPDATE of the buckets, per-upload verdicts.

    With a rate limit every device of the wave pays a token, refused uploads included; one whose
    bucket is empty gets 429 instead of its refusal.
    """
    limited = limits.per_minute > 0
    bucket = {"now": now, "rate": limits.per_minute / 60.0, "burst": float(limits.burst)}
    storable = [u for u in wave if u.refusal is None]
    inserted: dict[int, tuple[int, int]] = {}
    if storable:
        params: dict[str, object] = dict(bucket) if limited else {}
        for i, u in enumerate(storable):
            meta, info = u.meta, u.info
            assert meta is not None and info is not None
            staleness = info.config.max_staleness if info.config.mode == "async" else 0
            values = (info.pk, meta.model_version, u.device_pk, meta.nonce, meta.base_version,
                      groups_key(meta.groups), meta.example_count, meta.privacy.model_dump_json(), u.body,
                      len(u.body), u.received_at, staleness)
            params.update({f"{c}_{i}": v for c, v in zip(_COLUMNS, values, strict=True)})
        inserted = {device_pk: (update_id, round_) for device_pk, update_id, round_
                    in (yield _insert_sql(len(storable), limited), params)}
    took: set[int] = set()
    if limited:
        # The insert only read the buckets; taking the token can still lose a race with another worker.
        devices = [u.device_pk for u in wave]
        took = {pk for (pk,) in (yield _take_tokens_sql(len(devices)),
                                 {**bucket, **{f"device_{i}": pk for i, pk in enumerate(devices)}})}
        lost = sorted(pk for pk in inserted if pk not in took)
        if lost:
            yield _undo_sql(len(lost)), {f"id_{i}": inserted.pop(pk)[0] for i, pk in enumerate(lost)}
    outcomes: list[Outcome] = []
    for u in wave:
        if u.refusal is not None:
            outcomes.append(u.refusal if not limited or u.device_pk in took else _rate_limited(limits))
        elif u.device_pk in inserted:
            update_id, round_ = inserted[u.device_pk]
            # round r trains on state version r, so the receipt's state version is the round's base.
            outcomes.append(UpdateAccepted(update_id=update_id, state_version=round_, round=round_))
        else:
            outcomes.append((yield from _diagnose(u, limits)))
    return outcomes


def store_script(db: Database, batch: Sequence[PendingUpdate], *, limits: Limits, now: float
                 ) -> Script[list[Outcome]]:
    """The transaction storing a batch; its result is, per update, the receipt or the error refusing it.

    A refused update changes nothing. The n-th upload of a device in the batch goes in the n-th
    wave, so each wave's token check sees the previous waves' tokens taken. A database failure
    raises and rolls back the whole batch: no update in it was accepted. Run it with ``db.run``
    or a ``LoopConnection``.
    """
    waves: list[list[int]] = []
    seen: dict[int, int] = {}
    for i, update in enumerate(batch):
        n = seen[update.device_pk] = seen.get(update.device_pk, -1) + 1
        if n == len(waves):
            waves.append([])
        waves[n].append(i)
    # Held until commit: an aggregation cannot close a synchronous round under these inserts.
    for model_pk in sorted({u.info.pk for u in batch if u.info is not None and u.info.config.mode == "sync"}):
        lock = db.round_lock(model_pk, exclusive=False)
        if lock is not None:
            yield lock
    outcomes: dict[int, Outcome] = {}  # batch index → outcome; every index is in exactly one wave
    for wave in waves:
        verdicts = yield from _store_wave([batch[i] for i in wave], limits, now)
        outcomes.update(zip(wave, verdicts, strict=True))
    return [outcomes[i] for i in range(len(batch))]


def store_updates(db: Database, batch: Sequence[PendingUpdate], *, limits: Limits, now: float | None = None
                  ) -> list[Outcome]:
    """Store a batch in one blocking transaction (``store_script`` run by ``db.run``)."""
    return db.run(store_script(db, batch, limits=limits, now=time.time() if now is None else now))

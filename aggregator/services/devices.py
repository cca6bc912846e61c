"""Device identities: registration, bearer tokens (stored as sha256 only) and a per-worker token cache.

A device token is scoped to one model id. The server keeps ``sha256(token)``, so a database leak
reveals no usable token. Lookups are cached per worker for ``token_cache_s`` seconds because the
upload path is hot; revoking (or rotating away) a token therefore takes effect within that time.
Tokens expire ``token_ttl_s`` after issue; a device rotates its token before then
(``rotate_token``), which replaces the stored hash and restarts the clock.

Enrollment keys (``enrollment-key`` mode) are issued by the admin per model: the server keeps
their sha256, a use count (``max_devices``), an expiry and a token bucket, all checked and
updated by ONE conditional UPDATE in the registration's transaction, so concurrent registrations
on any number of workers cannot overspend a key.
"""

from __future__ import annotations

import hashlib
import random
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from aggregator.core.errors import ForbiddenError, NotFoundError, RateLimited, Unauthorized
from aggregator.db import Database
from aggregator.models import Device, EnrollmentKey, Model
from aggregator.schemas import DeviceCreated, EnrollmentKeyCreated
from fedpa.wire import ErrorCode

if TYPE_CHECKING:
    from sqlalchemy import CursorResult

__all__ = ["DeviceAuth", "TokenCache", "hash_token", "issue_enrollment_key", "new_admin_token", "register_device",
           "revoke_device", "rotate_token"]

KEY_PREFIX = "fpe_"  # enrollment keys, recognisable like device tokens
TOKEN_PREFIX = "fpd_"  # recognisable in logs and secret scanners


@dataclass(frozen=True)
class DeviceAuth:
    """An authenticated device: the principal that device-only routes receive."""

    pk: int
    device_id: str
    model_id: str
    expires_at: float | None = None  # unix time the token stops working; None: never

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and self.expires_at <= now


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_admin_token() -> str:
    """A fresh random admin token (for FEDPA_ADMIN_TOKEN): 43 URL-safe characters, 256 bits."""
    return secrets.token_urlsafe(32)


def _model_pk(session: Session, model_id: str) -> int:
    model_pk = session.execute(select(Model.id).where(Model.model_id == model_id)).scalar_one_or_none()
    if model_pk is None:
        raise NotFoundError(f"unknown model {model_id!r}", code=ErrorCode.UNKNOWN_MODEL)
    return model_pk


_USE_KEY = text("""
UPDATE enrollment_keys SET used = used + 1, bucket_at = :now,
  bucket_tokens = (CASE WHEN bucket_tokens + (:now - bucket_at) * :rate > :burst THEN :burst
                   ELSE bucket_tokens + (:now - bucket_at) * :rate END) - 1.0
WHERE key_hash = :key_hash AND model_pk = :model_pk AND NOT revoked AND used < max_devices
  AND (expires_at IS NULL OR expires_at > :now)
  AND (CASE WHEN bucket_tokens + (:now - bucket_at) * :rate > :burst THEN :burst
       ELSE bucket_tokens + (:now - bucket_at) * :rate END) >= 1.0
RETURNING id
""")


def _spend_key(session: Session, key: str, model_pk: int, model_id: str, *, rate_per_minute: float, burst: int,
               now: float) -> None:
    """Take one use of an issued enrollment key, or say precisely why not."""
    params = {"key_hash": hash_token(key), "model_pk": model_pk, "now": now, "rate": rate_per_minute / 60.0,
              "burst": float(burst)}
    row = session.execute(select(EnrollmentKey).where(EnrollmentKey.key_hash == params["key_hash"])
                          ).scalar_one_or_none()
    if row is None or row.revoked:
        raise Unauthorized("registration needs a valid enrollment key as bearer token",
                           code=ErrorCode.INVALID_ENROLLMENT_KEY)
    if session.execute(_USE_KEY, params).first() is not None:
        return
    if row.model_pk != model_pk:
        raise ForbiddenError(f"this enrollment key is not for model {model_id!r}", code=ErrorCode.WRONG_MODEL)
    if row.expires_at is not None and row.expires_at <= now:
        raise Unauthorized("this enrollment key has expired; ask the admin for a new one",
                           code=ErrorCode.ENROLLMENT_KEY_EXPIRED)
    if row.used >= row.max_devices:
        raise ForbiddenError(f"this enrollment key has registered its {row.max_devices} devices",
                             code=ErrorCode.ENROLLMENT_KEY_USED_UP)
    raise RateLimited(f"too many registrations with this enrollment key (at most {rate_per_minute:g}/minute)",
                      retry_after_s=60.0 / rate_per_minute)


def register_device(db: Database, model_id: str, *, burst: int, token_ttl_s: float | None = None,
                    enrollment_key: str | None = None, enrollment_rate_per_minute: float = 60.0,
                    enrollment_burst: int = 20) -> DeviceCreated:
    """A new device identity for a known model; the token is returned once and never stored.

    With ``enrollment_key`` one use of that issued key is taken in the same transaction.
    """
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = time.time()
    expires_at = None if token_ttl_s is None else now + token_ttl_s
    with db.begin() as session:
        model_pk = _model_pk(session, model_id)
        if enrollment_key is not None:
            _spend_key(session, enrollment_key, model_pk, model_id, rate_per_minute=enrollment_rate_per_minute,
                       burst=enrollment_burst, now=now)
        device = Device(device_id=uuid.uuid4().hex, model_pk=model_pk, token_hash=hash_token(token),
                        revoked=False, created_at=now, token_expires_at=expires_at, bucket_tokens=float(burst),
                        bucket_at=now)
        session.add(device)
    return DeviceCreated(device_id=device.device_id, token=token, model_id=model_id, expires_at=expires_at)


def issue_enrollment_key(db: Database, model_id: str, *, max_devices: int, ttl_s: float | None,
                         burst: int) -> EnrollmentKeyCreated:
    """Admin: a new enrollment key for ``model_id`` (shown once; the server keeps its sha256)."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    now = time.time()
    expires_at = None if ttl_s is None else now + ttl_s
    with db.begin() as session:
        session.add(EnrollmentKey(key_hash=hash_token(key), model_pk=_model_pk(session, model_id),
                                  max_devices=max_devices, used=0, expires_at=expires_at, revoked=False,
                                  created_at=now, bucket_tokens=float(burst), bucket_at=now))
    return EnrollmentKeyCreated(key=key, model_id=model_id, max_devices=max_devices, expires_at=expires_at)


def is_enrollment_key(token: str) -> bool:
    return token.startswith(KEY_PREFIX)


def rotate_token(db: Database, device: DeviceAuth, *, token_ttl_s: float | None) -> DeviceCreated:
    """A fresh token for an authenticated device; the old one stops working (within ``token_cache_s``)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = time.time()
    expires_at = None if token_ttl_s is None else now + token_ttl_s
    with db.begin() as session:
        result = session.execute(update(Device).where(Device.id == device.pk, Device.revoked.is_(False))
                                 .values(token_hash=hash_token(token), token_expires_at=expires_at))
        found = cast("CursorResult[Any]", result).rowcount  # an UPDATE's result is a cursor result
    if not found:
        raise Unauthorized("invalid or revoked token", code=ErrorCode.INVALID_TOKEN)
    return DeviceCreated(device_id=device.device_id, token=token, model_id=device.model_id, expires_at=expires_at)


def revoke_device(db: Database, device_id: str) -> None:
    """Refuse this device's token from now on (within ``token_cache_s`` on every worker)."""
    with db.begin() as session:
        result = session.execute(update(Device).where(Device.device_id == device_id).values(revoked=True))
        found = cast("CursorResult[Any]", result).rowcount
    if not found:
        raise NotFoundError(f"unknown device {device_id!r}", code=ErrorCode.UNKNOWN_DEVICE)


_DEVICE_BY_TOKEN = """
SELECT d.id, d.device_id, d.revoked, m.model_id, d.token_expires_at FROM devices d JOIN models m ON m.id = d.model_pk
WHERE d.token_hash = :token_hash
"""


class TokenCache:
    """token sha256 → DeviceAuth (or a miss), kept ``ttl_s`` seconds; thread-safe and bounded.

    Each entry lives a random 50–100% of ``ttl_s``: devices first seen together (a fleet starting
    a round) then expire spread out instead of all at once, which had stalled a worker with a
    burst of lookups (a 0.4 s tail at 500 uploads/s).
    """

    def __init__(self, db: Database, *, ttl_s: float, capacity: int = 100_000) -> None:
        self._db = db
        self._ttl = ttl_s
        self._capacity = capacity
        self._items: dict[str, tuple[float, DeviceAuth | None]] = {}
        self._lock = threading.Lock()

    def cached(self, token_hash: str) -> tuple[bool, DeviceAuth | None]:
        """(hit, device) without touching the database."""
        item = self._items.get(token_hash)
        if item is None or item[0] < time.monotonic():
            return False, None
        return True, item[1]

    def lookup(self, token_hash: str) -> DeviceAuth | None:
        """The device owning this token hash, from the cache or the database (blocking)."""
        hit, device = self.cached(token_hash)
        if hit:
            return device
        row = self._db.read_one(_DEVICE_BY_TOKEN, {"token_hash": token_hash})
        device = None if row is None or row[2] else DeviceAuth(row[0], row[1], row[3], row[4])
        if self._ttl > 0:
            with self._lock:
                if len(self._items) >= self._capacity:
                    self._items.clear()  # crude but bounded; a refill costs one query per device
                self._items[token_hash] = (time.monotonic() + self._ttl * random.uniform(0.5, 1.0), device)
        return device

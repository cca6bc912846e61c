"""Device identities: registration, bearer tokens (stored as sha256 only) and a per-worker token cache.

A device token is scoped to one model id. The server keeps ``sha256(token)``, so a database leak
reveals no usable token. Lookups are cached per worker for ``token_cache_s`` seconds because the
upload path is hot; revoking a token therefore takes effect within that time.
"""

from __future__ import annotations

import hashlib
import random
import secrets
import threading
import time
import uuid
from dataclasses import dataclass

from sqlalchemy import select, update

from aggregator.core.errors import NotFoundError
from aggregator.db import Database
from aggregator.models import Device, Model
from aggregator.schemas import DeviceCreated

__all__ = ["DeviceAuth", "TokenCache", "hash_token", "new_admin_token", "register_device", "revoke_device"]

TOKEN_PREFIX = "fpd_"  # recognisable in logs and secret scanners


@dataclass(frozen=True)
class DeviceAuth:
    """An authenticated device: the principal that device-only routes receive."""

    pk: int
    device_id: str
    model_id: str


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_admin_token() -> str:
    """A fresh random admin token (for FEDPA_ADMIN_TOKEN): 43 URL-safe characters, 256 bits."""
    return secrets.token_urlsafe(32)


def register_device(db: Database, model_id: str, *, burst: int) -> DeviceCreated:
    """A new device identity for a known model; the token is returned once and never stored."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = time.time()
    with db.begin() as session:
        model_pk = session.execute(select(Model.id).where(Model.model_id == model_id)).scalar_one_or_none()
        if model_pk is None:
            raise NotFoundError(f"unknown model {model_id!r}", code="unknown_model")
        device = Device(device_id=uuid.uuid4().hex, model_pk=model_pk, token_hash=hash_token(token),
                        revoked=False, created_at=now, bucket_tokens=float(burst), bucket_at=now)
        session.add(device)
    return DeviceCreated(device_id=device.device_id, token=token, model_id=model_id)


def revoke_device(db: Database, device_id: str) -> None:
    """Refuse this device's token from now on (within ``token_cache_s`` on every worker)."""
    with db.begin() as session:
        found = session.execute(update(Device).where(Device.device_id == device_id).values(revoked=True)).rowcount
    if not found:
        raise NotFoundError(f"unknown device {device_id!r}", code="unknown_device")


_DEVICE_BY_TOKEN = """
SELECT d.id, d.device_id, d.revoked, m.model_id FROM devices d JOIN models m ON m.id = d.model_pk
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
        device = None if row is None or row[2] else DeviceAuth(row[0], row[1], row[3])
        if self._ttl > 0:
            with self._lock:
                if len(self._items) >= self._capacity:
                    self._items.clear()  # crude but bounded; a refill costs one query per device
                self._items[token_hash] = (time.monotonic() + self._ttl * random.uniform(0.5, 1.0), device)
        return device

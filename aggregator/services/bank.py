"""The shared bank in the database (one safetensors blob per state version) and device downloads.

Devices download the gate plus their groups' adapters; ``groups`` may name ``*`` for an attribute
to fetch all of its values, so that downloads alone do not reveal the device's value (uploads
still do: docs/design.md §4). Encoded downloads are cached per worker by (version, groups) with a sha256
ETag, because thousands of devices ask for the same few combinations after each round. Which
selections and banks are valid is the shared-state spec's to say (``SharedStateSpec``); the
query's syntax is the wire contract's (``fedpa.wire``).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from aggregator.core.errors import NotFoundError, ServiceUnavailable
from aggregator.models import BankVersion
from aggregator.services.catalog import ModelInfo
from fedpa.payload import decode_tensors, encode_tensors
from fedpa.wire import (
    STATE_META_MODEL_ID,
    STATE_META_MODEL_VERSION,
    STATE_META_STATE_VERSION,
    ErrorCode,
    GroupSelection,
)

__all__ = ["StateCache", "StateDownload", "load_bank", "prune_bank", "store_bank"]

# (model pk, model version, state version, the selection's (attribute, value) pairs sorted; None: all)
_CacheKey = tuple[int, int, int, tuple[tuple[str, int | str], ...] | None]


def _selected(info: ModelInfo, groups: GroupSelection | None) -> list[str]:
    return [t.name for t in info.spec.select(groups)]


def store_bank(session: Session, info: ModelInfo, state_version: int, arrays: Mapping[str, np.ndarray],
               *, now: float, blob: bytes | None = None) -> None:
    """Insert one state version (``blob``: already-encoded safetensors of ``arrays``, if at hand)."""
    blob = blob if blob is not None else encode_tensors({n: arrays[n] for n in _selected(info, None)})
    session.add(BankVersion(model_pk=info.pk, model_version=info.model_version, state_version=state_version,
                            tensors=blob, sha256=hashlib.sha256(blob).hexdigest(), created_at=now))


def load_bank(session: Session, info: ModelInfo, state_version: int) -> dict[str, np.ndarray]:
    blob = session.execute(select(BankVersion.tensors).where(
        BankVersion.model_pk == info.pk, BankVersion.model_version == info.model_version,
        BankVersion.state_version == state_version)).scalar_one_or_none()
    if blob is None:
        raise NotFoundError(f"model {info.model_id!r} v{info.model_version} has no state version {state_version}")
    return decode_tensors(blob)


def prune_bank(session: Session, info: ModelInfo, *, keep_from: int) -> None:
    """Drop state versions older than ``keep_from`` (and every older model version's bank)."""
    session.execute(delete(BankVersion).where(
        BankVersion.model_pk == info.pk,
        (BankVersion.model_version < info.model_version) | (BankVersion.state_version < keep_from)))


@dataclass(frozen=True)
class StateDownload:
    body: bytes
    etag: str  # quoted strong ETag: sha256 of the body
    state_version: int
    model_version: int


class StateCache:
    """Per-worker LRU of encoded downloads keyed by (model pk, model version, state version, groups)."""

    def __init__(self, capacity: int = 256) -> None:
        self._items: OrderedDict[_CacheKey, StateDownload] = OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()

    def get(self, session: Session, info: ModelInfo, state_version: int,
            groups: GroupSelection | None) -> StateDownload:
        key: _CacheKey = (info.pk, info.model_version, state_version,
               None if groups is None else tuple(sorted(groups.items(), key=lambda kv: kv[0])))
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                return hit
        bank = load_bank(session, info, state_version)
        if not all(np.isfinite(a).all() for a in bank.values()):  # never stored by us; never served either
            raise ServiceUnavailable(f"shared state version {state_version} of {info.model_id!r} is not finite; "
                                     "the operator must restore it", code=ErrorCode.STATE_UNAVAILABLE,
                                     retry_after_s=60.0)
        metadata = {STATE_META_MODEL_ID: info.model_id, STATE_META_MODEL_VERSION: str(info.model_version),
                    STATE_META_STATE_VERSION: str(state_version)}
        body = encode_tensors({n: bank[n] for n in _selected(info, groups)}, metadata=metadata)
        item = StateDownload(body=body, etag=f'"{hashlib.sha256(body).hexdigest()}"',
                             state_version=state_version, model_version=info.model_version)
        with self._lock:
            self._items[key] = item
            while len(self._items) > self._capacity:
                self._items.popitem(last=False)
        return item

"""The shared bank in the database (one safetensors blob per state version) and device downloads.

Devices download the gate plus their groups' adapters; ``groups`` may name ``*`` for an attribute
to fetch all of its values, so that downloads alone do not reveal the device's value (uploads
still do: docs/design.md §4). Encoded downloads are cached per worker by (version, groups) with a sha256
ETag, because thousands of devices ask for the same few combinations after each round.
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
from fedpa.errors import PayloadError
from fedpa.payload import decode_tensors, encode_tensors
from fedpa.state import SharedStateSpec

__all__ = [
    "ALL_VALUES",
    "StateCache",
    "StateDownload",
    "load_bank",
    "parse_groups",
    "prune_bank",
    "store_bank",
    "validate_bank",
]

ALL_VALUES = "*"
GroupSelection = Mapping[str, int | str]  # attribute → value, or ALL_VALUES


def validate_bank(spec: SharedStateSpec, arrays: Mapping[str, np.ndarray]) -> None:
    """The whole bank must be exactly the manifest's tensors: names, shapes, float32, finite."""
    expected = spec.by_name()
    missing = sorted(set(expected) - set(arrays))
    unknown = sorted(set(arrays) - set(expected))
    if missing or unknown:
        raise PayloadError(f"shared state does not match the manifest: missing {missing[:5]}, unexpected {unknown[:5]}")
    for name, array in arrays.items():
        t = expected[name]
        if tuple(array.shape) != t.shape or array.dtype != np.float32:
            raise PayloadError(
                f"shared tensor {name!r} is {array.dtype}{tuple(array.shape)}, expected float32{t.shape}")
        if not np.isfinite(array).all():
            raise PayloadError(f"shared tensor {name!r} contains NaN or infinite values")


def parse_groups(raw: str, spec: SharedStateSpec) -> dict[str, int | str]:
    """``attr:value,attr:value`` (value an int code or ``*``) → selection; exactly the spec's attributes."""
    known = spec.attributes
    out: dict[str, int | str] = {}
    for part in filter(None, (p.strip() for p in raw.split(","))):
        attribute, sep, value = part.partition(":")
        if not sep or attribute in out:
            raise PayloadError(f"groups must be 'attribute:value' pairs, each attribute once; got {part!r}")
        if attribute not in known:
            raise PayloadError(f"unknown grouping attribute {attribute!r}; known: {sorted(known)}")
        if value == ALL_VALUES:
            out[attribute] = ALL_VALUES
            continue
        try:
            code = int(value)
        except ValueError:
            raise PayloadError(f"group value {value!r} of {attribute!r} is not an integer code or '*'") from None
        if not 0 <= code < known[attribute]:
            raise PayloadError(f"group value {code} of {attribute!r} out of range 0..{known[attribute] - 1}")
        out[attribute] = code
    if set(out) != set(known):
        raise PayloadError(f"groups must name exactly the attributes {sorted(known)}, got {sorted(out)}")
    return out


def _selected(spec: SharedStateSpec, groups: GroupSelection | None) -> list[str]:
    if groups is None:
        return [t.name for t in spec.tensors]
    return [t.name for t in spec.tensors
            if t.role == "gate" or groups[t.attribute] in (ALL_VALUES, t.value)]  # type: ignore[index]


def store_bank(session: Session, info: ModelInfo, state_version: int, arrays: Mapping[str, np.ndarray],
               *, now: float, blob: bytes | None = None) -> None:
    """Insert one state version (``blob``: already-encoded safetensors of ``arrays``, if at hand)."""
    blob = blob if blob is not None else encode_tensors({n: arrays[n] for n in _selected(info.spec, None)})
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
        self._items: OrderedDict[tuple, StateDownload] = OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()

    def get(self, session: Session, info: ModelInfo, state_version: int,
            groups: GroupSelection | None) -> StateDownload:
        key = (info.pk, info.model_version, state_version,
               None if groups is None else tuple(sorted(groups.items(), key=lambda kv: kv[0])))
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                return hit
        bank = load_bank(session, info, state_version)
        if not all(np.isfinite(a).all() for a in bank.values()):  # never stored by us; never served either
            raise ServiceUnavailable(f"shared state version {state_version} of {info.model_id!r} is not finite; "
                                     "the operator must restore it", code="state_unavailable", retry_after_s=60.0)
        metadata = {"fedpa.model_id": info.model_id, "fedpa.model_version": str(info.model_version),
                    "fedpa.state_version": str(state_version)}
        body = encode_tensors({n: bank[n] for n in _selected(info.spec, groups)}, metadata=metadata)
        item = StateDownload(body=body, etag=f'"{hashlib.sha256(body).hexdigest()}"',
                             state_version=state_version, model_version=info.model_version)
        with self._lock:
            self._items[key] = item
            while len(self._items) > self._capacity:
                self._items.popitem(last=False)
        return item

"""The device's local store: everything a phone keeps between rounds, crash-safe.

A device must survive being killed at any instant (the OS reclaims apps mid-training). So every
file is replaced atomically — written to a temporary file in the same folder, fsynced, renamed
over the old one, then the folder is fsynced — and ``state.json`` is written *last* as the commit
record of a multi-file change. A crash therefore leaves either the old or the new state, never a
mix; leftover ``*.tmp`` files are ignored and cleaned on open.

Layout of a store folder::

    state.json                device id/token, groups, counters (rounds, uploads, ε, bytes), the
                              privacy ledger (σ, C of every upload sent), pending upload
    private.safetensors       the private user adapter (parameter names); never leaves the device
    interactions.safetensors  the local interaction log (encoded x, labels, timestamps)
    shared.safetensors        the last downloaded gate + group adapters (for offline scoring)
    item_vectors.safetensors  the item vectors of the items looked up, by item code (edge.signals);
                              kept decoded in memory while the file is unchanged
    bundle/                   the verified model bundle
    pending-<nonce>.bin       an upload that was built (noised, ε charged) but not yet acknowledged
    pending-<nonce>.private.safetensors  the private adapter trained in that round (committed on 2xx)

Usage: ``store = LocalStore.open(path); store.save_private(tensors)``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file, save

from fedpa.errors import ConfigError, PayloadError
from fedpa.privacy import Mechanism, Upload
from fedpa.runtime.items import CodeVectors

__all__ = ["AppliedPrivacy", "DeviceState", "LocalStore", "PendingUpload", "atomic_write"]

STORE_FORMAT = 1


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable: POSIX only promises it once the folder's entry is flushed."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some filesystems (and Windows) cannot open folders; the rename still happened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | Path, data: bytes) -> os.stat_result:
    """Replace ``path`` with ``data`` so that readers (and crash survivors) see old or new, never half.

    Returns the written file's stat (taken before the rename, which keeps inode, size and mtime):
    the identity of exactly these bytes, even if another writer replaces the file right after.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
        written = os.fstat(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    return written


_FileKey = tuple[int, int, int, int]


def _file_key(st: os.stat_result) -> _FileKey:
    """Which version of a file: every atomic_write is a new inode, so a rewrite changes the key."""
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


class AppliedPrivacy(TypedDict):
    """What one upload applied, as the ledger in ``state.json`` keeps it (a :class:`~fedpa.privacy.Upload`)."""

    mechanism: Mechanism
    noise_multiplier: float
    clip_norm: float


def _unrecorded() -> AppliedPrivacy:
    """The entry of an upload staged without a record: counted as un-noised, like :meth:`LocalStore.uploads`
    counts uploads sent before the ledger existed."""
    return {"mechanism": "none", "noise_multiplier": 0.0, "clip_norm": math.inf}


@dataclass
class PendingUpload:
    """An update that left (or may have left) the device: kept until the server acknowledges it.

    Its bytes are re-sent verbatim after a crash or network failure, never re-noised: a second
    noise draw for the same round would spend privacy twice.
    """

    nonce: str
    base_version: int
    round: int  # the device's round counter the upload belongs to
    example_count: int
    epsilon_after: float  # the device's ε once this upload counts as sent
    created_at: float
    applied: AppliedPrivacy = field(default_factory=_unrecorded)  # the accountant's entry


@dataclass
class DeviceState:
    """The counters and identity a device keeps in ``state.json``."""

    format: int = STORE_FORMAT
    user: str | None = None  # the local user's id, for reports only
    groups: dict[str, int] = field(default_factory=dict)
    server: str | None = None
    model_id: str | None = None
    model_version: int | None = None
    device_id: str | None = None
    token: str | None = None
    token_issued_at: float | None = None  # this device's clock when the token arrived
    token_expires_at: float | None = None  # the server's expiry of the token (None: never, or not known)
    rounds_completed: int = 0  # rounds whose upload the server accepted
    uploads_sent: int = 0  # noised updates that left the device (the accountant's count)
    epsilon_spent: float = 0.0  # at the δ the device accounted with when it last uploaded
    # one entry per upload that left the device: what it *applied* (never what a server claimed);
    # kept across bundle installs and model versions — a new bundle does not give privacy back
    ledger: list[AppliedPrivacy] = field(default_factory=list)
    bytes_up: int = 0
    bytes_down: int = 0
    refused: int = 0  # uploads the server refused with a 4xx
    last_state_version: int | None = None
    pending: PendingUpload | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> DeviceState:
        raw = json.loads(text)
        if raw.get("format") != STORE_FORMAT:
            raise ConfigError(f"device store format {raw.get('format')!r} is not {STORE_FORMAT}")
        pending = raw.pop("pending", None)
        state = cls(**raw)
        state.pending = PendingUpload(**pending) if pending else None
        return state


class LocalStore:
    """One device's folder. All writes are atomic; ``commit`` makes a multi-file change visible."""

    STATE = "state.json"
    PRIVATE = "private.safetensors"
    LOG = "interactions.safetensors"
    SHARED = "shared.safetensors"
    ITEM_VECTORS = "item_vectors.safetensors"

    def __init__(self, root: Path, state: DeviceState) -> None:
        self.root = root
        self.state = state
        # the decoded item-vector cache and the file version it was decoded from: a ranking reads
        # it twice (learn, then score), and one decode costs up to ~1 ms (a full 2,049-code file)
        self._item_vectors: tuple[_FileKey, CodeVectors] | None = None

    @classmethod
    def open(cls, root: str | Path) -> LocalStore:
        """Open (or create) a store; recovers from a crash by dropping unreferenced temporaries."""
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        path = root / cls.STATE
        state = DeviceState.from_json(path.read_text()) if path.is_file() else DeviceState()
        store = cls(root, state)
        store._sweep()
        return store

    def _sweep(self) -> None:
        """Remove temporaries and pending files that ``state.json`` does not reference (crash leftovers)."""
        keep = set()
        if self.state.pending is not None:
            keep = {self.pending_body_path(self.state.pending.nonce).name,
                    self.pending_private_path(self.state.pending.nonce).name}
        for entry in self.root.iterdir():
            stale_tmp = entry.name.endswith(".tmp")
            stale_pending = entry.name.startswith("pending-") and entry.name not in keep
            if entry.is_file() and (stale_tmp or stale_pending):
                with contextlib.suppress(OSError):
                    entry.unlink()

    # ------------------------------------------------------------------ state record

    def commit(self) -> None:
        """Write ``state.json``: the single point at which a round's changes become durable."""
        atomic_write(self.root / self.STATE, self.state.to_json().encode())

    # ------------------------------------------------------------------ tensors

    @staticmethod
    def _save(path: Path, tensors: Mapping[str, np.ndarray]) -> None:
        atomic_write(path, save({k: np.ascontiguousarray(v) for k, v in tensors.items()}))

    def save_private(self, tensors: Mapping[str, np.ndarray]) -> None:
        self._save(self.root / self.PRIVATE, tensors)

    def load_private(self) -> dict[str, np.ndarray] | None:
        path = self.root / self.PRIVATE
        return dict(load_file(path)) if path.is_file() else None

    def save_shared(self, tensors: Mapping[str, np.ndarray], *, version: int, etag: str | None) -> None:
        """Cache the last downloaded shared tensors (wire names) so scoring works offline."""
        atomic_write(self.root / self.SHARED, save({k: np.ascontiguousarray(v) for k, v in tensors.items()},
                                                   metadata={"version": str(version), "etag": etag or ""}))

    def load_shared(self) -> tuple[dict[str, np.ndarray], int, str | None] | None:
        path = self.root / self.SHARED
        if not path.is_file():
            return None
        with safe_open(str(path), framework="numpy") as fh:
            meta = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
        return tensors, int(meta.get("version", -1)), meta.get("etag") or None

    def load_item_vectors(self) -> CodeVectors | None:
        """The stored item vectors by item code (None: none yet, or unreadable — refilled by lookups).

        Decoded once and kept while the file is unchanged; a rewrite (by this store, another
        instance on the folder, or a restart) is a new inode, so it is decoded again.
        """
        path = self.root / self.ITEM_VECTORS
        try:
            key = _file_key(path.stat())  # before reading: a file replaced in between is re-read next call
        except OSError:  # none yet (or unreachable): the next lookups write it
            self._item_vectors = None
            return None
        if self._item_vectors is not None and self._item_vectors[0] == key:
            return self._item_vectors[1]
        self._item_vectors = None
        try:
            book = CodeVectors.decode(path.read_bytes(), source=str(path))
        except (OSError, PayloadError):
            return None
        self._item_vectors = (key, book)
        return book

    def save_item_vectors(self, book: CodeVectors) -> None:
        """Replace the stored item vectors with ``book``, which then is the in-memory copy."""
        self._item_vectors = None  # a failed write leaves the next read to the file as it is
        written = atomic_write(self.root / self.ITEM_VECTORS, book.encode())
        self._item_vectors = (_file_key(written), book)

    def save_log(self, x: np.ndarray, y: np.ndarray, ts: np.ndarray | None = None) -> None:
        """Replace the interaction log (encoded feature codes ``[N, F]``, labels ``[N]``, timestamps)."""
        x = np.asarray(x, np.int64)
        y = np.asarray(y, np.float32)
        if x.ndim != 2 or y.shape != (x.shape[0],):
            raise ConfigError(f"interaction log needs x [N, F] and y [N], got {x.shape} and {y.shape}")
        ts = np.arange(len(y), dtype=np.int64) if ts is None else np.asarray(ts, np.int64)
        self._save(self.root / self.LOG, {"x": x, "y": y, "ts": ts})

    def append_log(self, x: np.ndarray, y: np.ndarray, ts: np.ndarray | None = None) -> None:
        """Add impressions to the log (a rewrite: logs on a phone are small)."""
        old = self.load_log()
        if old is None:
            self.save_log(x, y, ts)
            return
        ts_new = np.arange(len(y), dtype=np.int64) + (int(old[2].max()) + 1 if len(old[2]) else 0) \
            if ts is None else np.asarray(ts, np.int64)
        self.save_log(np.concatenate([old[0], np.asarray(x, np.int64)]),
                      np.concatenate([old[1], np.asarray(y, np.float32)]),
                      np.concatenate([old[2], ts_new]))

    def load_log(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        path = self.root / self.LOG
        if not path.is_file():
            return None
        data = load_file(path)
        return data["x"], data["y"], data["ts"]

    # ------------------------------------------------------------------ pending upload

    def pending_body_path(self, nonce: str) -> Path:
        return self.root / f"pending-{nonce}.bin"

    def pending_private_path(self, nonce: str) -> Path:
        return self.root / f"pending-{nonce}.private.safetensors"

    def stage_upload(self, pending: PendingUpload, body: bytes, private: Mapping[str, np.ndarray]) -> None:
        """Persist a built upload and the round's private adapter, then charge its ε (one commit).

        After this returns the upload counts as sent for privacy accounting, whether or not it
        ever reaches the server: a lost response cannot tell us the server did not see the bytes.
        """
        atomic_write(self.pending_body_path(pending.nonce), body)
        self._save(self.pending_private_path(pending.nonce), private)
        self.state.pending = pending
        self.state.uploads_sent += 1
        self.state.ledger.append(pending.applied.copy())
        self.state.epsilon_spent = pending.epsilon_after
        self.commit()

    def uploads(self) -> list[Upload]:
        """The accountant's view of every upload sent; an upload with no record counts as un-noised."""
        ledger = [Upload(e["mechanism"], float(e["noise_multiplier"]), float(e["clip_norm"]))
                  for e in self.state.ledger]
        missing = self.state.uploads_sent - len(ledger)  # a store written before the ledger existed
        return ledger + [Upload("none", 0.0, math.inf)] * max(0, missing)

    def pending_body(self) -> bytes:
        if self.state.pending is None:
            raise ConfigError("no pending upload")
        return self.pending_body_path(self.state.pending.nonce).read_bytes()

    def finish_upload(self, *, accepted: bool, record: Mapping[str, Any] | None = None) -> None:
        """Close the pending upload: on acceptance the round's private adapter becomes current.

        On refusal nothing but the counters changes: the private adapter and log stay as they
        were before the round (the ε already charged stays charged — the server saw the bytes).
        """
        pending = self.state.pending
        if pending is None:
            return
        private_path = self.pending_private_path(pending.nonce)
        if accepted:
            # rename is atomic; if a crash hit between it and the commit below, the file has
            # already moved and the resent upload finds it gone — that is the same outcome
            if private_path.is_file():
                os.replace(private_path, self.root / self.PRIVATE)
                _fsync_dir(self.root)
            self.state.rounds_completed += 1
            body = self.pending_body_path(pending.nonce)
            self.state.bytes_up += body.stat().st_size if body.is_file() else 0
        else:
            self.state.refused += 1
        if record is not None:
            self.state.history.append(dict(record))
        self.state.pending = None
        self.commit()
        self._sweep()

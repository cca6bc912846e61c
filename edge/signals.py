"""A device's signal columns: item-table rows from the server, history from its own store.

The bundle's schema may declare ``item_table`` columns (served per candidate by the aggregator)
and ``history`` columns (the user's own earlier rows, ``fedpa.signals.HistoryState``). This module
is the device's one place for both; the codes always go into ``x`` through
``FeatureEncoder.fill``:

* **history** lives in ``history.json`` in the local store, next to the interaction log it
  summarises. It is updated with every recorded interaction and survives restarts; it records how
  many log rows it has seen, so a crash between appending to the log and saving the history is
  caught up on the next open. Nothing here is ever sent: uploads are built from the shared
  tensors' deltas only (a test inspects every request body);
* **item rows** come from :class:`edge.items.ItemTableClient` (batched, cached per table version).
  Their item vectors (item table format 2) are kept by item code in ``item_vectors.safetensors``
  (:class:`fedpa.runtime.items.CodeVectors`), so the logged rows train with the vectors they were
  ranked with, also after a restart (:func:`item_vectors_for`). The store keeps the decoded file
  in memory while it is unchanged (:meth:`edge.store.LocalStore.load_item_vectors`): a ranking
  reads it twice (learn the fetched rows, then score), a round once.

A row's history codes use only rows strictly earlier in time, the rule the dataset pipeline
trains with (:func:`fedpa.signals.visible_prefix`): rows logged at the same instant do not see
each other.

Usage: ``sig = DeviceSignals.open(store, schema, items=ItemTableClient(client, "demo"))``;
``x = sig.fill(x, item_ids)``; ``sig.record(x, y, ts)``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from edge.store import LocalStore, atomic_write
from fedpa.data.schema import FeatureSchema  # before fedpa.signals: fedpa.data ↔ fedpa.signals import cycle
from fedpa.errors import ConfigError, DataError, PayloadError
from fedpa.runtime.features import FeatureEncoder
from fedpa.runtime.items import CodeVectors
from fedpa.signals import HistoryState

if TYPE_CHECKING:
    from edge.items import ItemTableClient
    from fedpa.runtime.items import ItemRows

__all__ = ["HISTORY_FILE", "ITEM_VECTORS_FILE", "DeviceSignals", "item_vectors_for", "learn_item_vectors"]

HISTORY_FILE = "history.json"
ITEM_VECTORS_FILE = LocalStore.ITEM_VECTORS


def learn_item_vectors(store: LocalStore, rows: ItemRows) -> None:
    """Add the vectors of fetched item rows to the store's cache (another student's vectors start it over)."""
    if not rows.meta.vector_dim:
        return
    book = store.load_item_vectors()  # the store's decoded copy: learnt into, then written back
    if book is None or book.digest != rows.meta.vector_sha256 or book.dim != rows.meta.vector_dim:
        book = CodeVectors(rows.meta.vector_sha256, rows.meta.vector_dim)
    before = len(book)
    book.learn(rows)
    if len(book) != before or before == 0:
        store.save_item_vectors(book)


def item_vectors_for(store: LocalStore, x: np.ndarray, *, column: int, digest: str) -> np.ndarray:
    """The ``item_vector`` input ``[N, d]`` for encoded rows ``x``: the cached vectors of their item codes.

    ``digest`` is the bundle's ``manifest.item_vectors.sha256``: vectors of another student (an older
    model) are never used.
    """
    book = store.load_item_vectors()
    if book is None or book.digest != digest:
        raise ConfigError(f"{store.root}: no item vectors of this model's student yet; rank (look up) "
                          "the items first: the item table serves them")
    try:
        return book.for_codes(np.asarray(x)[:, column])
    except PayloadError as exc:
        raise ConfigError(f"{store.root}: {exc}") from exc


def _schema_digest(schema: FeatureSchema) -> str:
    return hashlib.sha256(json.dumps(schema.to_dict(), sort_keys=True).encode()).hexdigest()


class DeviceSignals:
    """Item-table rows and the persisted history state for one device and one bundle schema."""

    def __init__(self, store: LocalStore, schema: FeatureSchema, *, items: ItemTableClient | None = None) -> None:
        self.store = store
        self.schema = schema
        self.encoder = FeatureEncoder(schema)
        self.items = items
        self.needs_items = bool(self.encoder.positions("item_table"))
        self.history: HistoryState | None = (HistoryState.for_schema(schema)
                                             if self.encoder.positions("history") else None)
        self.observed = 0  # log rows the history has seen

    @classmethod
    def open(cls, store: LocalStore, schema: FeatureSchema, *, items: ItemTableClient | None = None) -> DeviceSignals:
        """Load the stored history (rebuilt from the log if it is missing, for another schema, or behind)."""
        signals = cls(store, schema, items=items)
        if signals.history is None:
            return signals
        path = store.root / HISTORY_FILE
        raw: dict[str, Any] | None = None
        if path.is_file():
            try:
                raw = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                raw = None  # unreadable: rebuilt below from the log, which is the source of truth
        if raw is not None and raw.get("schema") == _schema_digest(schema):
            try:
                signals.history.load_dict(raw["state"])
                signals.observed = int(raw["observed"])
            except (DataError, KeyError, TypeError, ValueError):
                signals.history, signals.observed = HistoryState.for_schema(schema), 0
        log = store.load_log()
        n = 0 if log is None else len(log[1])
        if signals.observed > n:  # the log was replaced: start over from it
            signals.history, signals.observed = HistoryState.for_schema(schema), 0
        if log is not None and signals.observed < n:
            signals.history.observe(log[0][signals.observed:], log[1][signals.observed:])
            signals.observed = n
            signals.save()
        return signals

    @property
    def active(self) -> bool:
        """Whether the bundle has any signal columns to fill."""
        return self.needs_items or self.history is not None

    def save(self) -> None:
        if self.history is None:
            return
        body = {"schema": _schema_digest(self.schema), "observed": self.observed, "state": self.history.to_dict()}
        atomic_write(self.store.root / HISTORY_FILE, json.dumps(body, separators=(",", ":")).encode())

    def _rows(self, item_ids: Sequence[Any] | np.ndarray | None, n: int) -> ItemRows | None:
        if not self.needs_items or n == 0:
            return None
        if self.items is None:
            raise ConfigError("this bundle's features include item-table columns: the device needs an "
                              "ItemTableClient (a server connection) to rank or record")
        if item_ids is None or len(item_ids) != n:
            raise DataError(f"item ids are needed for the item-table columns ({n} rows, "
                            f"{'no' if item_ids is None else len(item_ids)} ids)")
        rows = self.items.rows(item_ids)
        learn_item_vectors(self.store, rows)
        return rows

    def learn_vectors(self, item_ids: Sequence[Any] | np.ndarray) -> None:
        """Fetch the rows of ``item_ids`` only for their item vectors (e.g. items already in the log)."""
        if len(item_ids):
            self._rows(item_ids, len(item_ids))

    def fill(self, x: np.ndarray, item_ids: Sequence[Any] | np.ndarray | None = None, *,
             groups: Mapping[str, int] | None = None) -> np.ndarray:
        """Candidate rows (user/item columns encoded) → full rows, with the history as it is now."""
        x = np.asarray(x, np.int64)
        return self.encoder.fill(x, items=self._rows(item_ids, len(x)), history=self.history, groups=groups)

    def record(self, x: np.ndarray, y: np.ndarray, ts: np.ndarray | None = None) -> None:
        """Log labelled full rows (as they were scored) and add them to the history, then persist both."""
        x, y = np.asarray(x, np.int64), np.asarray(y, np.float32)
        self.store.append_log(x, y, ts)
        if self.history is not None:
            self.history.observe(x, y)
            self.observed += len(y)
            self.save()

    def rebuild(self) -> None:
        """History from the whole stored log (its rows already carry their signal columns), then saved."""
        if self.history is None:
            return
        self.history = HistoryState.for_schema(self.schema)
        log = self.store.load_log()
        if log is not None:
            self.history.observe(log[0], log[1])
        self.observed = 0 if log is None else len(log[1])
        self.save()

    def replay(self, x: np.ndarray, y: np.ndarray, ts: np.ndarray,
               item_ids: Sequence[Any] | np.ndarray | None = None) -> np.ndarray:
        """A chronological raw log (user/item columns encoded) → full rows, as the device would have scored them.

        History restarts empty and each row sees only rows with a strictly earlier timestamp. The
        caller saves the returned rows as the log, *then* calls :meth:`save` (a crash in between
        is caught up from the log on the next open).
        """
        x, y, ts = np.asarray(x, np.int64), np.asarray(y, np.float32), np.asarray(ts, np.int64)
        if len(ts) > 1 and (np.diff(ts) < 0).any():
            raise DataError("replay needs rows in time order")
        rows = self._rows(item_ids, len(x))
        out = x.copy()
        if self.history is not None:
            self.history = HistoryState.for_schema(self.schema)
        starts = np.flatnonzero(np.r_[True, ts[1:] != ts[:-1]]) if len(ts) else np.zeros(0, np.int64)
        for a, b in zip(starts, np.r_[starts[1:], len(ts)], strict=True):
            part = rows.take(slice(a, b)) if rows is not None else None
            out[a:b] = self.encoder.fill(x[a:b], items=part, history=self.history)
            if self.history is not None:
                self.history.observe(out[a:b], y[a:b])
        self.observed = len(y)
        return out

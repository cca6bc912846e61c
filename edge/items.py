"""The device's item-table client: rows for its candidates, fetched in batches and cached by table version.

A phone ranks the same candidates many times a day, and the table changes once in a while (a
refresh is a new ``table_version``), so rows are cached per ``(model_version, table_version)``:
a cached row is served without the network until the server's version moves on, then the
whole cache is dropped at once — rows of two table versions are never mixed in one ranking.

Only item ids leave the device (the ids it may show anyway); the per-group columns of every group
value come back, so the server does not learn the device's group from a lookup.

Usage: ``items = ItemTableClient(client, "demo"); rows = items.rows(["v17", "v3"])``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge.client import AggregatorClient
from fedpa.data.schema import canonical_strings
from fedpa.errors import PayloadError
from fedpa.runtime.items import ItemRows, ItemTableMeta

__all__ = ["ItemTableClient", "publish_item_table"]

log = logging.getLogger(__name__)

DEFAULT_MAX_CACHED = 50_000  # rows kept per device (~30 bytes each): the cache is dropped when full


class ItemTableClient:
    """Batched, cached lookups of ``POST /v1/models/{model_id}/items/lookup`` (docs/api.md)."""

    def __init__(self, client: AggregatorClient, model_id: str, *, model_version: int | None = None,
                 max_batch: int | None = None, max_cached: int = DEFAULT_MAX_CACHED) -> None:
        self.client = client
        self.model_id = model_id
        self.model_version = model_version  # the bundle's; a table for another version is refused
        self.max_batch = max_batch  # None: the server's max_lookup_batch, read on first use
        self.max_cached = max_cached
        self.meta: ItemTableMeta | None = None
        # per id: item code, stat codes, known, and the item vector (int8 row, scale) of a format-2 table
        self._rows: dict[str, tuple[int, np.ndarray, bool, np.ndarray | None, float]] = {}
        self.requests = 0  # lookup calls made (tests and benchmarks count them)

    @property
    def table_version(self) -> int | None:
        return None if self.meta is None else self.meta.table_version

    def status(self) -> dict[str, Any]:
        """``GET …/items``; drops the cache when the server serves another table version."""
        body: dict[str, Any] = self.client.request("GET", f"/v1/models/{self.model_id}/items").json()
        if self.max_batch is None:
            self.max_batch = int(body["max_lookup_batch"])
        if self.meta is not None and int(body["table_version"]) != self.meta.table_version:
            self.clear()
        return body

    def clear(self) -> None:
        self._rows.clear()
        self.meta = None

    def _fetch(self, ids: list[str]) -> ItemRows:
        self.requests += 1
        r = self.client.request("POST", f"/v1/models/{self.model_id}/items/lookup", json={"item_ids": ids})
        rows = ItemRows.decode(r.content, source=f"{self.client.base_url} item lookup")
        if len(rows) != len(ids):
            raise PayloadError(f"item lookup answered {len(rows)} rows for {len(ids)} ids")
        if self.model_version is not None and rows.meta.model_version != self.model_version:
            raise PayloadError(f"the server's item table is for model_version {rows.meta.model_version}, this "
                               f"device's bundle is v{self.model_version}: download the new bundle first")
        return rows

    def rows(self, item_ids: Sequence[Any] | np.ndarray) -> ItemRows:
        """Rows for ``item_ids`` in order (unknown ids: ``known = False``, OOV codes)."""
        keys = canonical_strings(item_ids)
        if any(k is None for k in keys):
            raise PayloadError("candidate item ids must not be missing (None/NaN/empty)")
        for _attempt in range(3):  # a refresh landing mid-call restarts it once or twice, never mixes versions
            missing = list(dict.fromkeys(k for k in keys if k not in self._rows))
            if self.max_batch is None and missing:
                self.status()
            if len(self._rows) + len(missing) > self.max_cached:
                self._rows.clear()  # bounded memory: forget everything (keeps the version), refetch
                missing = list(dict.fromkeys(keys))
            batch = self.max_batch or len(missing) or 1
            restarted = False
            for start in range(0, len(missing), batch):
                part = missing[start:start + batch]
                rows = self._fetch(part)
                if self.meta is not None and rows.meta.table_version != self.meta.table_version:
                    log.info("item table moved from v%d to v%d: cache dropped", self.meta.table_version,
                             rows.meta.table_version)
                    self.clear()
                    restarted = True
                if self.meta is None:
                    self.meta = rows.meta
                for i, k in enumerate(part):
                    self._rows[k] = (int(rows.item_code[i]), rows.codes[i], bool(rows.known[i]),
                                     None if rows.vector is None else rows.vector[i],
                                     0.0 if rows.vector_scale is None else float(rows.vector_scale[i]))
                if restarted:
                    break
            if not restarted and all(k in self._rows for k in keys):
                break
        else:
            raise PayloadError("the item table kept changing during one lookup; try again")
        if self.meta is None:  # nothing fetched and nothing cached: an empty request
            raise PayloadError("no candidates to look up")
        entries = [self._rows[k] for k in keys]
        n_columns, d = len(self.meta.columns), self.meta.vector_dim
        vector = scale = None
        if d:
            vector = (np.stack([e[3] for e in entries if e[3] is not None]) if entries
                      else np.zeros((0, d), np.int8))
            scale = np.array([e[4] for e in entries], np.float32)
        return ItemRows(self.meta, np.array([e[0] for e in entries], np.int32),
                        np.stack([e[1] for e in entries]) if entries else np.zeros((0, n_columns), np.uint8),
                        np.array([e[2] for e in entries], bool), vector, scale)


def publish_item_table(client: AggregatorClient, model_id: str, path: str | Path) -> dict[str, Any]:
    """Admin: upload an ``items.safetensors`` written by ``fedpa-export items`` → the server's status of it."""
    body = Path(path).read_bytes()
    status: dict[str, Any] = client.request("POST", f"/v1/models/{model_id}/items", content=body, ok=(200, 201),
                                            headers={"Content-Type": "application/octet-stream"}).json()
    return status

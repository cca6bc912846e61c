"""Item tables: publish one for a model version, and answer devices' per-candidate lookups.

The table itself (ids → item code + stat codes) is ``fedpa.runtime.items.ItemTableFile``; this module
stores it as one safetensors blob per ``(model, model_version, table_version)`` and keeps the
parsed current table per worker (``ItemTableCache``): a lookup is one indexed read for the current
version, then a vectorised ``get_indexer`` over the cached ids — no per-item database work.

Rules: a table must be for the model's *current* version and match its ``item_table`` features
column for column; its item vectors must be the ones the model's programs take
(``manifest.item_vectors``: same dim and digest, none when the manifest has none; 422
``item_vectors_mismatch`` otherwise, ``ItemTableFile.check_vectors``); a refresh needs a higher
``table_version`` (409 otherwise); only the newest ``KEEP_TABLES`` tables of a model stay stored.
Every refusal leaves the stored tables as they were (one transaction).

Usage: ``publish_item_table(db, "demo", body)``; ``cache.current(session, "demo").lookup(ids)``.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from aggregator.core.errors import ConflictError, NotFoundError, Unprocessable
from aggregator.db import Database
from aggregator.models import ItemTableVersion, Model
from aggregator.services.catalog import stored_manifest
from fedpa.data.schema import FeatureSchema
from fedpa.errors import DataError, PayloadError
from fedpa.manifest import Manifest
from fedpa.runtime.items import ItemTableFile, item_table_features
from fedpa.wire import ErrorCode

__all__ = ["KEEP_TABLES", "MAX_LOOKUP_BATCH", "ItemTableCache", "ItemTableInfo", "publish_item_table"]

KEEP_TABLES = 3  # stored tables per model: the current one and two older for rollback/debugging
MAX_LOOKUP_BATCH = 1024  # candidates per lookup request; a device ranking more splits its batch


@dataclass(frozen=True)
class ItemTableInfo:
    """What ``GET …/items`` answers: which table devices get now."""

    model_id: str
    model_version: int
    table_version: int
    n_items: int
    sha256: str
    meta_json: str
    created_at: float


def _schema(manifest: Manifest, model_id: str) -> FeatureSchema:
    try:
        schema = FeatureSchema.from_dict(manifest.feature_schema)
    except (DataError, KeyError, TypeError, ValueError) as exc:
        raise PayloadError(f"model {model_id!r} has no readable feature schema ({exc!r}); it takes no item table"
                           ) from exc
    if not item_table_features(schema):
        raise PayloadError(f"model {model_id!r} v{manifest.model_version} has no item_table features "
                           f"(built with --features base?); it takes no item table")
    return schema


def publish_item_table(db: Database, model_id: str, body: bytes) -> ItemTableInfo:
    """Validate and store a table for ``model_id``'s current version (admin)."""
    table = ItemTableFile.decode(body, source="item table upload")
    meta = table.meta
    if meta.model_id != model_id:
        raise PayloadError(f"the item table is for model {meta.model_id!r}, the URL names {model_id!r}")
    now = time.time()
    try:
        with db.begin() as session:
            row = session.execute(select(Model.id, Model.model_version, Model.manifest_json)
                                  .where(Model.model_id == model_id)).one_or_none()
            if row is None:
                raise NotFoundError(f"unknown model {model_id!r}", code=ErrorCode.UNKNOWN_MODEL)
            if meta.model_version != row.model_version:
                raise ConflictError(f"the item table matches model_version {meta.model_version}, but {model_id!r} "
                                    f"is at {row.model_version}; compute it against the current bundle",
                                    code=ErrorCode.MODEL_VERSION_MISMATCH)
            manifest = stored_manifest(row.manifest_json, model_id)
            table.check_schema(_schema(manifest, model_id))
            try:
                table.check_vectors(manifest.item_vectors)
            except PayloadError as exc:
                raise Unprocessable(f"{exc} (model {model_id!r} v{row.model_version})",
                                    code=ErrorCode.ITEM_VECTORS_MISMATCH) from exc
            latest = session.execute(select(func.max(ItemTableVersion.table_version)).where(
                ItemTableVersion.model_pk == row.id, ItemTableVersion.model_version == row.model_version)).scalar()
            if latest is not None and meta.table_version <= latest:
                raise ConflictError(f"model {model_id!r} v{row.model_version} already has item table version "
                                    f"{latest}; publish a higher table_version (got {meta.table_version})",
                                    code=ErrorCode.TABLE_VERSION_NOT_NEWER)
            sha = hashlib.sha256(body).hexdigest()
            session.add(ItemTableVersion(model_pk=row.id, model_version=row.model_version,
                                         table_version=meta.table_version, n_items=len(table),
                                         meta_json=meta.to_json(), content=bytes(body), sha256=sha, created_at=now))
            session.flush()
            stored = session.execute(select(ItemTableVersion.model_version, ItemTableVersion.table_version)
                                     .where(ItemTableVersion.model_pk == row.id)).all()
            for old in sorted(stored, reverse=True)[KEEP_TABLES:]:
                session.execute(delete(ItemTableVersion).where(
                    ItemTableVersion.model_pk == row.id, ItemTableVersion.model_version == old.model_version,
                    ItemTableVersion.table_version == old.table_version))
    except IntegrityError as exc:  # the same version published concurrently
        raise ConflictError(f"item table version {meta.table_version} of {model_id!r} was published concurrently",
                            code=ErrorCode.TABLE_VERSION_NOT_NEWER) from exc
    return ItemTableInfo(model_id, meta.model_version, meta.table_version, len(table), sha, meta.to_json(), now)


class ItemTableCache:
    """Per-worker cache of parsed current tables (thread-safe, a few entries)."""

    def __init__(self, max_entries: int = 4) -> None:
        self._tables: dict[tuple[int, int, int], ItemTableFile] = {}
        self._lock = threading.Lock()
        self._max = max_entries

    @staticmethod
    def info(session: Session, model_id: str) -> tuple[int, ItemTableInfo]:
        """The current model version's newest table (model pk, info); 404 if there is none."""
        row = session.execute(
            select(Model.id, Model.model_version, ItemTableVersion.table_version, ItemTableVersion.n_items,
                   ItemTableVersion.sha256, ItemTableVersion.meta_json, ItemTableVersion.created_at)
            .join(ItemTableVersion, (ItemTableVersion.model_pk == Model.id)
                  & (ItemTableVersion.model_version == Model.model_version), isouter=True)
            .where(Model.model_id == model_id)
            .order_by(ItemTableVersion.table_version.desc()).limit(1)).one_or_none()
        if row is None:
            raise NotFoundError(f"unknown model {model_id!r}", code=ErrorCode.UNKNOWN_MODEL)
        if row.table_version is None:
            raise NotFoundError(f"model {model_id!r} v{row.model_version} has no item table yet (the operator "
                                "publishes one with POST /v1/models/{model_id}/items)", code=ErrorCode.NO_ITEM_TABLE)
        return row.id, ItemTableInfo(model_id, row.model_version, row.table_version, row.n_items, row.sha256,
                                     row.meta_json, row.created_at)

    def current(self, session: Session, model_id: str) -> ItemTableFile:
        """The parsed table devices are served now (loaded from the database on a miss)."""
        pk, info = self.info(session, model_id)
        key = (pk, info.model_version, info.table_version)
        table = self._tables.get(key)
        if table is None:
            content = session.execute(select(ItemTableVersion.content).where(
                ItemTableVersion.model_pk == pk, ItemTableVersion.model_version == info.model_version,
                ItemTableVersion.table_version == info.table_version)).scalar_one()
            table = ItemTableFile.decode(content, source=f"stored item table of {model_id!r}")
            with self._lock:
                for old in [k for k in self._tables if k[0] == pk] + list(self._tables)[: max(
                        0, len(self._tables) - self._max + 1)]:
                    self._tables.pop(old, None)
                self._tables[key] = table
        return table

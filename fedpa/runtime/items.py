"""The item table: per-item input codes and vectors served by the aggregator, and its bytes on the wire (torch-free).

The item side of the model's ``item_table`` features (item code, as-of item statistics, CTR within
each group value) changes every day, so it is not baked into the bundle: the operator computes a
table from the open log (``fedpa-export items``), publishes it with its own ``table_version``
(refreshable without a new model version), and a device fetches the rows of its candidates.

Format version 2 also carries each item's *vector*: the student's item-code embedding row of its
code (the OOV row for infrequent and unknown items), int8-quantised per row with a float32 scale
(:func:`quantise_vectors`). The programs take it as their ``item_vector`` input instead of holding
the item-code embedding (``fedpa.model.external_item_vectors``), which keeps ≈ 66 KB per program
out of the bundle. The dequantised values (``q · scale`` in float32) are what every runtime uses,
the golden vectors included, so quantisation costs no parity. A version-1 table (no vectors) is
refused with a message saying how to recompute it.

A row is ``item_code`` (int32) + one uint8 per stat column + a ``known`` byte + ``d`` int8 + a
float32 scale: ~29 bytes per candidate for d = 8 and two stat columns, under the 64-byte budget.
Per-group CTR features carry one column per value of the group attribute (codes ``0 … card-1``):
the table serves them all, so a lookup does not reveal the device's group, and the device picks
its own value's column (:meth:`ItemRows.columns_for`).

Two safetensors layouts, both with ``__metadata__["fedpa.items"]`` = :class:`ItemTableMeta` JSON:

* the published table: ``item_code`` int32 [N], ``codes`` uint8 [N, C], ``default_codes`` uint8 [C]
  (the row of an unknown item), ``id_bytes`` uint8 [B] (UTF-8 of the raw ids back to back),
  ``id_offsets`` int64 [N + 1]; when ``vector_dim`` d > 0 also ``vector`` int8 [N, d],
  ``vector_scale`` float32 [N], ``default_vector`` int8 [1, d], ``default_vector_scale`` float32 [1]
  (the OOV row's);
* a lookup answer: ``item_code`` int32 [n], ``codes`` uint8 [n, C], ``known`` uint8 [n]
  (0 = unknown item: the OOV marker; its item code is 0 and its codes the table's default row),
  and when d > 0 ``vector`` int8 [n, d], ``vector_scale`` float32 [n].

Usage: ``rows = ItemRows.decode(body); x[:, cols] = rows.columns_for(schema, groups)``;
``item_vector = rows.vectors()``.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fedpa.errors import PayloadError
from fedpa.payload import decode_tensors, encode_tensors
from fedpa.wire import read_metadata

if TYPE_CHECKING:
    from fedpa.data.schema import FeatureSchema
    from fedpa.manifest import ItemVectorSpec
    from fedpa.signals.items import ItemTable

__all__ = [
    "ITEMS_FORMAT_VERSION",
    "ITEMS_METADATA_KEY",
    "CodeVectors",
    "ItemColumn",
    "ItemRows",
    "ItemTableFile",
    "ItemTableMeta",
    "dequantise_vectors",
    "expected_columns",
    "item_table_features",
    "per_group_features",
    "quantise_vectors",
    "vectors_digest",
]

ITEMS_FORMAT_VERSION = 2
ITEMS_METADATA_KEY = "fedpa.items"
_MAX_ITEMS_METADATA = 1 << 20  # the header reader's own cap on the whole header
ITEM_CODE = "item_code"  # the schema feature whose code is the table's int32 column
_MAX_CODE = 255  # stat codes travel as uint8


class ItemColumn(BaseModel):
    """One uint8 column of ``codes``: a schema feature, or one group value's column of a per-group feature."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    feature: str
    group_attribute: str | None = None
    group_value: int | None = Field(None, ge=0)


class ItemTableMeta(BaseModel):
    """What a table (or a lookup answer) is: which model's code map it matches, which version."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    format_version: int = ITEMS_FORMAT_VERSION
    model_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    model_version: int = Field(ge=1)
    table_version: int = Field(ge=1)
    created_at: str = ""
    columns: tuple[ItemColumn, ...]
    vector_dim: int = Field(0, ge=0, le=1024)  # d of the item vectors (0: the model takes none)
    # vectors_digest of the student's quantised rows (= manifest.item_vectors.sha256): which student
    # the vectors are of, so a device never mixes vectors of two students
    vector_sha256: str = Field("", pattern=r"^([0-9a-f]{64})?$")
    info: dict[str, Any] = {}  # provenance: dataset, rows counted, as-of time (not used by clients)

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def parse(cls, raw: str | None, *, source: str) -> ItemTableMeta:
        if not raw:
            raise PayloadError(f"{source}: no __metadata__[{ITEMS_METADATA_KEY!r}] (not a FedPA item table)")
        try:
            meta = cls.model_validate_json(raw)
        except ValidationError as exc:
            raise PayloadError(f"{source}: item-table metadata does not match the schema: {exc}") from exc
        if meta.format_version == 1:
            raise PayloadError(f"{source}: item-table format_version 1 carries no item vectors; this FedPA reads "
                               f"{ITEMS_FORMAT_VERSION}: recompute the table with `fedpa-export items --student …`")
        if meta.format_version != ITEMS_FORMAT_VERSION:
            raise PayloadError(f"{source}: unknown item-table format_version {meta.format_version}; "
                               f"this FedPA reads {ITEMS_FORMAT_VERSION}")
        return meta


def quantise_vectors(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 ``[K, d]`` → (int8 ``[K, d]``, float32 scale ``[K]``): symmetric per-row int8.

    ``scale = max|row| / 127`` (0 for an all-zero row) and ``q = round(row / scale)``, so the
    dequantised row (:func:`dequantise_vectors`) is within ``scale / 2`` of the original per value.
    """
    rows = np.asarray(rows, np.float32)
    if rows.ndim != 2 or not np.isfinite(rows).all():
        raise PayloadError(f"item vectors must be a finite float [K, d] array, got shape {rows.shape}")
    scale = (np.abs(rows).max(axis=1, initial=0.0) / np.float32(127)).astype(np.float32)
    safe = np.where(scale > 0, scale, np.float32(1))[:, None]
    q = np.clip(np.rint(rows / safe), -127, 127).astype(np.int8)
    return q, scale


def dequantise_vectors(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``q · scale`` in float32, ``[K, d]``: the values every runtime feeds as ``item_vector``.

    One float32 multiply per value, so Java (``(float) q * scale``) computes the same bits.
    """
    return (np.asarray(q, np.int8).astype(np.float32) * np.asarray(scale, np.float32)[:, None]).astype(np.float32)


def vectors_digest(q: np.ndarray, scale: np.ndarray) -> str:
    """sha256 of quantised rows (int8 bytes, then float32 little-endian scales): ``manifest.item_vectors.sha256``."""
    import hashlib

    h = hashlib.sha256(np.ascontiguousarray(q, np.int8).tobytes())
    h.update(np.ascontiguousarray(scale, "<f4").tobytes())
    return h.hexdigest()


def _check_vectors(vector: np.ndarray, scale: np.ndarray, n: int, dim: int, source: str) -> None:
    if vector.dtype != np.int8 or scale.dtype != np.float32:
        raise PayloadError(f"{source}: vector must be int8 and vector_scale float32, got {vector.dtype} and "
                           f"{scale.dtype}")
    if vector.shape != (n, dim) or scale.shape != (n,):
        raise PayloadError(f"{source}: vector {vector.shape} and vector_scale {scale.shape} do not fit {n} rows "
                           f"of dimension {dim}")
    if not np.isfinite(scale).all() or (scale < 0).any():
        raise PayloadError(f"{source}: vector_scale must be finite and ≥ 0")


def item_table_features(schema: FeatureSchema) -> list[str]:
    """Names of the schema's features served by the item table, in column order."""
    return [f.name for f in schema.features if getattr(f, "source", None) == "item_table"]


def per_group_features(schema: FeatureSchema) -> dict[str, str]:
    """``item_table`` features taken within a group attribute's value (feature ``of`` a user feature)."""
    users = {schema.names[p] for p in schema.user_feature_positions}
    return {f.name: f.of for f in schema.features
            if getattr(f, "source", None) == "item_table" and getattr(f, "of", "") in users}


def expected_columns(schema: FeatureSchema) -> tuple[ItemColumn, ...]:
    """The uint8 columns a table for ``schema`` must have, in order.

    A per-group feature (:func:`per_group_features`) has one column per value ``0 … card-1`` of
    its group attribute, every other feature one column; ``item_code`` is the int32 column.
    """
    per_group = per_group_features(schema)
    cards = dict(zip(schema.names, schema.cardinalities, strict=True))
    columns: list[ItemColumn] = []
    for name in item_table_features(schema):
        if name == ITEM_CODE:
            continue
        attribute = per_group.get(name)
        if attribute is None:
            columns.append(ItemColumn(feature=name))
        else:
            columns.extend(ItemColumn(feature=name, group_attribute=attribute, group_value=v)
                           for v in range(cards[attribute]))
    return tuple(columns)


def _check_codes(item_code: np.ndarray, codes: np.ndarray, n_columns: int, source: str) -> None:
    if item_code.ndim != 1 or codes.ndim != 2 or codes.shape != (len(item_code), n_columns):
        raise PayloadError(f"{source}: item_code {item_code.shape} and codes {codes.shape} do not fit "
                           f"{n_columns} columns")
    if item_code.size and int(item_code.min()) < 0:
        raise PayloadError(f"{source}: negative item_code {int(item_code.min())}")


@dataclass(frozen=True)
class ItemRows:
    """Rows for a batch of candidates, in request order; ``known[i] == False`` is the OOV marker.

    A decoded lookup answer's ``meta.columns`` is empty (the answer does not repeat them): they are
    ``expected_columns(schema)`` of the bundle, which :meth:`columns_for` uses.
    """

    meta: ItemTableMeta
    item_code: np.ndarray  # int32 [n]
    codes: np.ndarray  # uint8 [n, C], columns as meta.columns
    known: np.ndarray  # bool [n]
    vector: np.ndarray | None = None  # int8 [n, d] when meta.vector_dim = d > 0
    vector_scale: np.ndarray | None = None  # float32 [n]

    def __post_init__(self) -> None:
        d = self.meta.vector_dim
        if d and (self.vector is None or self.vector_scale is None):
            raise PayloadError(f"item rows of a table with {d}-dimensional vectors carry no vectors")
        if d:
            assert self.vector is not None and self.vector_scale is not None
            _check_vectors(self.vector, self.vector_scale, len(self.item_code), d, "item rows")
        elif self.vector is not None:
            raise PayloadError("item rows carry vectors, but their table declares vector_dim 0")

    def __len__(self) -> int:
        return len(self.item_code)

    def vectors(self) -> np.ndarray:
        """The dequantised item vectors ``[n, d]`` float32: the programs' ``item_vector`` input."""
        if self.vector is None or self.vector_scale is None:
            raise PayloadError(f"item table v{self.meta.table_version} serves no item vectors (vector_dim 0)")
        return dequantise_vectors(self.vector, self.vector_scale)

    def _vector_tensors(self) -> dict[str, np.ndarray]:
        if self.vector is None or self.vector_scale is None:
            return {}
        return {"vector": self.vector.astype(np.int8), "vector_scale": self.vector_scale.astype(np.float32)}

    def encode(self) -> bytes:
        """The lookup answer's bytes (see the module docstring)."""
        # the column list is left out: the device derives it from its schema (expected_columns),
        # which the table was checked against at publish — ~1 KB less per answer
        meta = self.meta.model_copy(update={"columns": (), "info": {}, "created_at": ""})
        return encode_tensors({"item_code": self.item_code.astype(np.int32), "codes": self.codes.astype(np.uint8),
                               "known": self.known.astype(np.uint8), **self._vector_tensors()},
                              metadata={ITEMS_METADATA_KEY: meta.to_json()})

    @classmethod
    def decode(cls, body: bytes, *, source: str = "item rows") -> ItemRows:
        meta = ItemTableMeta.parse(_metadata(body, source), source=source)
        t = decode_tensors(body)
        names = ["codes", "item_code", "known", *(["vector", "vector_scale"] if meta.vector_dim else [])]
        if sorted(t) != names:
            raise PayloadError(f"{source}: tensors {sorted(t)} != {names}")
        _check_codes(t["item_code"], t["codes"], len(meta.columns) or t["codes"].shape[-1], source)
        if t["known"].shape != t["item_code"].shape:
            raise PayloadError(f"{source}: known {t['known'].shape} does not fit item_code {t['item_code'].shape}")
        if meta.vector_dim:
            _check_vectors(t["vector"], t["vector_scale"], len(t["item_code"]), meta.vector_dim, source)
        return cls(meta, t["item_code"].astype(np.int32), t["codes"].astype(np.uint8), t["known"].astype(bool),
                   t.get("vector"), t.get("vector_scale"))

    def take(self, index: np.ndarray | slice) -> ItemRows:
        """The rows at ``index`` (a mask, indices or a slice), same table."""
        return ItemRows(self.meta, self.item_code[index], self.codes[index], self.known[index],
                        None if self.vector is None else self.vector[index],
                        None if self.vector_scale is None else self.vector_scale[index])

    @classmethod
    def concat(cls, parts: Sequence[ItemRows]) -> ItemRows:
        if not parts:
            raise PayloadError("no item rows to join")
        has = parts[0].vector is not None
        return cls(parts[0].meta, np.concatenate([p.item_code for p in parts]),
                   np.concatenate([p.codes for p in parts]), np.concatenate([p.known for p in parts]),
                   np.concatenate([p.vector for p in parts if p.vector is not None]) if has else None,
                   np.concatenate([p.vector_scale for p in parts if p.vector_scale is not None]) if has else None)

    def columns_for(self, schema: FeatureSchema, groups: Mapping[str, int]) -> dict[str, np.ndarray]:
        """Codes per ``item_table`` feature of ``schema`` for a device in ``groups`` ([n] int64 each).

        A per-group feature takes the column of the device's own value (OOV value 0 if the table
        has no column for it); a feature the table does not serve is a PayloadError.
        """
        out: dict[str, np.ndarray] = {}
        columns = self.meta.columns or expected_columns(schema)
        if len(columns) != self.codes.shape[1]:
            raise PayloadError(f"item table v{self.meta.table_version} has {self.codes.shape[1]} columns, the "
                               f"bundle's schema needs {len(columns)}: the table is for another model version")
        index: dict[tuple[str, str | None, int | None], int] = {
            (c.feature, c.group_attribute, c.group_value): j for j, c in enumerate(columns)}
        for name in item_table_features(schema):
            if name == ITEM_CODE:
                out[name] = self.item_code.astype(np.int64)
                continue
            j = index.get((name, None, None))
            if j is None:
                attributes = {c.group_attribute for c in columns if c.feature == name}
                if len(attributes) != 1 or None in attributes:
                    raise PayloadError(f"item table v{self.meta.table_version} has no column for feature {name!r}")
                attribute = attributes.pop()
                assert attribute is not None
                if attribute not in groups:
                    raise PayloadError(f"feature {name!r} is per value of {attribute!r}, but the device's groups "
                                       f"{dict(groups)} do not name it")
                j = index.get((name, attribute, int(groups[attribute])), index.get((name, attribute, 0)))
                if j is None:
                    raise PayloadError(f"item table v{self.meta.table_version}: feature {name!r} has no column "
                                       f"for {attribute}={groups[attribute]}")
            out[name] = self.codes[:, j].astype(np.int64)
        return out


class CodeVectors:
    """A device's item vectors by item code, learnt from the item rows it fetched (its cache for training).

    Why by code: a program's ``item_vector`` is the vector of the row's item code (the OOV row for
    code 0), the same in every table version of one model version, and the interaction log keeps
    codes, not ids. So the rows a device fetched to rank its candidates also give the vectors its
    logged rows train with. Usage: ``book.learn(rows); v = book.for_codes(x[:, column])``.
    """

    def __init__(self, digest: str, dim: int) -> None:
        self.digest = digest  # the student's (ItemTableMeta.vector_sha256 = manifest.item_vectors.sha256)
        self.dim = dim
        self._rows: dict[int, tuple[np.ndarray, np.float32]] = {}

    def __len__(self) -> int:
        return len(self._rows)

    def learn(self, rows: ItemRows) -> None:
        """Remember the vector of every row's item code; rows of another student's vectors are refused."""
        if rows.meta.vector_sha256 != self.digest or rows.meta.vector_dim != self.dim:
            raise PayloadError(f"item rows with vectors {rows.meta.vector_sha256[:12]} (d={rows.meta.vector_dim}) "
                               f"for a cache of {self.digest[:12]} (d={self.dim})")
        if rows.vector is None or rows.vector_scale is None:
            return
        for code, q, scale in zip(rows.item_code.tolist(), rows.vector, rows.vector_scale, strict=True):
            self._rows[int(code)] = (q.copy(), np.float32(scale))

    def for_codes(self, codes: np.ndarray) -> np.ndarray:
        """Dequantised vectors ``[n, d]`` for item codes ``[n]``; a code never fetched is a PayloadError."""
        codes = np.asarray(codes, np.int64).reshape(-1)
        missing = sorted({int(c) for c in codes.tolist()} - set(self._rows))
        if missing:
            raise PayloadError(f"no item vector for item codes {missing[:5]}: look the items up in the item table "
                               "first (their rows carry the vectors)")
        q = np.stack([self._rows[int(c)][0] for c in codes]) if len(codes) else np.zeros((0, self.dim), np.int8)
        scale = np.array([self._rows[int(c)][1] for c in codes], np.float32)
        return dequantise_vectors(q, scale)

    def encode(self) -> bytes:
        codes = sorted(self._rows)
        q = np.stack([self._rows[c][0] for c in codes]) if codes else np.zeros((0, self.dim), np.int8)
        return encode_tensors({"item_code": np.array(codes, np.int32), "vector": q.astype(np.int8),
                               "vector_scale": np.array([self._rows[c][1] for c in codes], np.float32)},
                              metadata={"vector_sha256": self.digest, "dim": str(self.dim)})

    @classmethod
    def decode(cls, body: bytes, *, source: str = "item vectors") -> CodeVectors:
        try:
            meta = read_metadata(body)
            book = cls(meta["vector_sha256"], int(meta["dim"]))
            t = decode_tensors(body)
            _check_vectors(t["vector"], t["vector_scale"], len(t["item_code"]), book.dim, source)
        except (KeyError, ValueError) as exc:
            raise PayloadError(f"{source}: not a FedPA item-vector cache ({exc!r})") from exc
        for code, q, scale in zip(t["item_code"].tolist(), t["vector"], t["vector_scale"], strict=True):
            book._rows[int(code)] = (q, np.float32(scale))
        return book


def _metadata(body: bytes, source: str) -> str | None:
    """``__metadata__[fedpa.items]`` of a safetensors body (header only; the body is parsed later)."""
    try:  # the one safetensors header reader; an item table's metadata (its column list) may be large
        meta = read_metadata(body, max_metadata_bytes=_MAX_ITEMS_METADATA)
    except PayloadError as exc:
        raise PayloadError(f"{source}: {exc}") from exc
    return meta.get(ITEMS_METADATA_KEY)


@dataclass(frozen=True)
class ItemTableFile:
    """A whole table: raw item ids (canonical strings) → item code + stat codes.

    ``default_codes`` is the row of an item the table does not know (OOV item code 0, zero counts,
    the prior click-rate's bucket): exactly what the dataset pipeline gives a never-seen item, so a
    new item ranks as the model learnt to rank new items. With ``meta.vector_dim`` d > 0 each row
    also has its item code's quantised vector, and the default row the OOV code's.
    """

    meta: ItemTableMeta
    ids: np.ndarray  # object [N] of str, distinct
    item_code: np.ndarray  # int32 [N]
    codes: np.ndarray  # uint8 [N, C]
    default_codes: np.ndarray  # uint8 [C]
    vector: np.ndarray | None = None  # int8 [N, d]
    vector_scale: np.ndarray | None = None  # float32 [N]
    default_vector: np.ndarray | None = None  # int8 [1, d]: the OOV row's
    default_vector_scale: np.ndarray | None = None  # float32 [1]
    _index: pd.Index = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_codes(self.item_code, self.codes, len(self.meta.columns), "item table")
        d = self.meta.vector_dim
        vectors = (self.vector, self.vector_scale, self.default_vector, self.default_vector_scale)
        if d:
            if any(v is None for v in vectors):
                raise PayloadError(f"item table: vector_dim {d} but no item vectors")
            assert self.vector is not None and self.vector_scale is not None
            assert self.default_vector is not None and self.default_vector_scale is not None
            _check_vectors(self.vector, self.vector_scale, len(self.item_code), d, "item table")
            _check_vectors(self.default_vector, self.default_vector_scale, 1, d, "item table default row")
        elif any(v is not None for v in vectors):
            raise PayloadError("item table: vectors given, but vector_dim is 0")
        if len(self.ids) != len(self.item_code):
            raise PayloadError(f"item table: {len(self.ids)} ids for {len(self.item_code)} rows")
        if self.default_codes.shape != (len(self.meta.columns),):
            raise PayloadError(f"item table: default_codes {self.default_codes.shape} do not fit "
                               f"{len(self.meta.columns)} columns")
        index = pd.Index(np.asarray(self.ids, dtype=object))
        if not index.is_unique:
            dup = index[index.duplicated()][0]
            raise PayloadError(f"item table: item id {dup!r} appears more than once")
        object.__setattr__(self, "_index", index)

    @classmethod
    def from_arrays(cls, meta: ItemTableMeta, ids: Sequence[Any] | np.ndarray, item_code: np.ndarray,
                    codes: np.ndarray, default_codes: np.ndarray | None = None,
                    code_vectors: tuple[np.ndarray, np.ndarray] | None = None) -> ItemTableFile:
        """Build from computed codes, refusing any that do not fit the wire's int32/uint8.

        ``code_vectors`` = :func:`quantise_vectors` of the student's item-code rows (row k = code
        k, row 0 = OOV): each item gets its code's row, the default row code 0's. It sets
        ``meta.vector_dim``.
        """
        from fedpa.data.schema import canonical_strings

        strings = canonical_strings(ids)
        codes = np.asarray(codes).reshape(len(strings), len(meta.columns))
        default = np.zeros(len(meta.columns), np.int64) if default_codes is None else np.asarray(default_codes)
        for name, a in (("codes", codes), ("default_codes", default)):
            if a.size and (int(a.min()) < 0 or int(a.max()) > _MAX_CODE):
                raise PayloadError(f"item table: {name} must be 0..{_MAX_CODE} (uint8), got "
                                   f"{int(a.min())}..{int(a.max())}")
        item_code = np.asarray(item_code)
        if item_code.size and int(item_code.max()) > np.iinfo(np.int32).max:
            raise PayloadError("item table: item_code exceeds int32")
        if any(s is None for s in strings):
            raise PayloadError("item table: an item id is missing (None/NaN/empty)")
        if code_vectors is None:
            return cls(meta.model_copy(update={"vector_dim": 0, "vector_sha256": ""}), strings,
                       item_code.astype(np.int32), codes.astype(np.uint8), default.astype(np.uint8).reshape(-1))
        q, scale = code_vectors
        _check_vectors(q, scale, len(scale), q.shape[-1] if q.ndim == 2 else 0, "item vectors")
        if item_code.size and int(item_code.max()) >= len(q):
            raise PayloadError(f"item table: item_code {int(item_code.max())} has no vector (the student has "
                               f"{len(q)} item-code rows): the student is not the one the codes were fitted for")
        index = item_code.astype(np.int64)
        meta = meta.model_copy(update={"vector_dim": int(q.shape[1]), "vector_sha256": vectors_digest(q, scale)})
        return cls(meta, strings, item_code.astype(np.int32),
                   codes.astype(np.uint8), default.astype(np.uint8).reshape(-1), q[index], scale[index],
                   q[:1].copy(), scale[:1].copy())

    @classmethod
    def from_signals(cls, table: ItemTable, schema: FeatureSchema, *, model_id: str, model_version: int,
                     table_version: int, created_at: str = "", info: Mapping[str, Any] | None = None,
                     code_vectors: tuple[np.ndarray, np.ndarray] | None = None) -> ItemTableFile:
        """The wire form of ``fedpa.signals.ItemTable`` (the maths' own table), columns per :func:`expected_columns`.

        ``code_vectors``: the quantised item-code rows, as for :meth:`from_arrays`.
        """
        columns = expected_columns(schema)
        meta = ItemTableMeta(model_id=model_id, model_version=model_version, table_version=table_version,
                             created_at=created_at, columns=columns, info=dict(info or {}))
        n = len(table.item_ids)
        codes = np.zeros((n, len(columns)), np.int64)
        default = np.zeros(len(columns), np.int64)
        common = {name: j for j, name in enumerate(table.common_columns)}
        for j, c in enumerate(columns):
            if c.group_attribute is None:
                codes[:, j], default[j] = table.common[:, common[c.feature]], table.default_common[common[c.feature]]
            else:
                codes[:, j] = table.group_ctr[c.group_attribute][:, c.group_value]
                default[j] = table.default_group_ctr[c.group_attribute][c.group_value]
        if ITEM_CODE in common:
            item_code = table.common[:, common[ITEM_CODE]]
        else:
            item_code = np.zeros(n, np.int64)
        return cls.from_arrays(meta, table.item_ids, item_code, codes, default, code_vectors)

    def __len__(self) -> int:
        return len(self.ids)

    def lookup(self, item_ids: Sequence[Any] | np.ndarray) -> ItemRows:
        """Rows for ``item_ids`` in order; unknown ids get ``known = False``, item code 0 and the default row."""
        from fedpa.data.schema import canonical_strings

        where = self._index.get_indexer(pd.Index(canonical_strings(item_ids), dtype=object))
        known = where >= 0
        item_code = np.zeros(len(where), np.int32)
        codes = np.repeat(self.default_codes[None, :], len(where), axis=0)
        item_code[known] = self.item_code[where[known]]
        codes[known] = self.codes[where[known]]
        if self.vector is None or self.vector_scale is None:
            return ItemRows(self.meta, item_code, codes, known)
        assert self.default_vector is not None and self.default_vector_scale is not None
        vector = np.repeat(self.default_vector, len(where), axis=0)
        scale = np.repeat(self.default_vector_scale, len(where))
        vector[known], scale[known] = self.vector[where[known]], self.vector_scale[where[known]]
        return ItemRows(self.meta, item_code, codes, known, vector, scale)

    def encode(self) -> bytes:
        """The published file's bytes (see the module docstring)."""
        raw = [s.encode("utf-8") for s in self.ids]
        offsets = np.zeros(len(raw) + 1, np.int64)
        offsets[1:] = np.cumsum([len(b) for b in raw])
        blob = np.frombuffer(b"".join(raw), dtype=np.uint8) if raw else np.zeros(0, np.uint8)
        vectors: dict[str, np.ndarray] = {}
        for name in ("vector", "vector_scale", "default_vector", "default_vector_scale"):
            value = getattr(self, name)
            if value is not None:
                vectors[name] = value
        return encode_tensors({"item_code": self.item_code, "codes": self.codes, "default_codes": self.default_codes,
                               "id_bytes": blob, "id_offsets": offsets, **vectors},
                              metadata={ITEMS_METADATA_KEY: self.meta.to_json()})

    @classmethod
    def decode(cls, body: bytes, *, source: str = "item table") -> ItemTableFile:
        meta = ItemTableMeta.parse(_metadata(body, source), source=source)
        t = decode_tensors(body)
        names = ["codes", "default_codes", "id_bytes", "id_offsets", "item_code"]
        if meta.vector_dim:
            names = sorted([*names, "vector", "vector_scale", "default_vector", "default_vector_scale"])
        if sorted(t) != names:
            raise PayloadError(f"{source}: tensors {sorted(t)} != {names}")
        offsets, blob = t["id_offsets"].astype(np.int64), t["id_bytes"].astype(np.uint8).tobytes()
        n = len(t["item_code"])
        if offsets.shape != (n + 1,) or (n and (offsets[0] != 0 or offsets[-1] != len(blob)
                                                 or (np.diff(offsets) <= 0).any())):
            raise PayloadError(f"{source}: id_offsets do not describe {n} non-empty ids in {len(blob)} bytes")
        try:
            ids = np.array([blob[a:b].decode("utf-8") for a, b in itertools.pairwise(offsets.tolist())],
                           dtype=object)
        except UnicodeDecodeError as exc:
            raise PayloadError(f"{source}: an item id is not UTF-8 ({exc})") from exc
        if t["codes"].dtype != np.uint8 or t["default_codes"].dtype != np.uint8 or t["item_code"].dtype != np.int32:
            raise PayloadError(f"{source}: item_code must be int32 and codes uint8, got "
                               f"{t['item_code'].dtype} and {t['codes'].dtype}")
        return cls(meta, ids, t["item_code"], t["codes"], t["default_codes"], t.get("vector"), t.get("vector_scale"),
                   t.get("default_vector"), t.get("default_vector_scale"))

    def check_schema(self, schema: FeatureSchema) -> None:
        """Refuse a table whose columns are not exactly what ``schema``'s item_table features need."""
        expected = expected_columns(schema)
        if tuple(self.meta.columns) != expected:
            raise PayloadError(f"item table columns {[c.model_dump(exclude_none=True) for c in self.meta.columns]} "
                               f"do not match the model's item_table features "
                               f"{[c.model_dump(exclude_none=True) for c in expected]}")
        cards = dict(zip(schema.names, schema.cardinalities, strict=True))
        if ITEM_CODE in cards and self.item_code.size and int(self.item_code.max()) >= cards[ITEM_CODE]:
            raise PayloadError(f"item table: item_code {int(self.item_code.max())} outside the model's "
                               f"0..{cards[ITEM_CODE] - 1}")
        for j, c in enumerate(self.meta.columns):
            top = max(int(self.codes[:, j].max()) if len(self.codes) else 0, int(self.default_codes[j]))
            if top >= cards[c.feature]:
                raise PayloadError(f"item table: column {c.feature!r} has code {top} outside the model's "
                                   f"0..{cards[c.feature] - 1}")

    def check_vectors(self, spec: ItemVectorSpec | None) -> None:
        """Refuse a table whose item vectors are not the ones the model's programs take.

        ``spec`` is the bundle's ``manifest.item_vectors`` (None: the programs embed the item code
        themselves, so the table must carry no vectors). The table's ``vector_dim`` and
        ``vector_sha256`` must be the manifest's ``dim`` and ``sha256``, every row of one item code
        must carry the same vector, and when the rows cover every item code (an exported table
        does) their digest must be ``sha256`` — so metadata that names the right student over
        another student's rows is refused too. Devices would otherwise rank with vectors the
        programs were not built for, or fail on their first lookup.
        """
        meta, d = self.meta, self.meta.vector_dim
        if spec is None:
            if d:
                raise PayloadError(f"item table: carries {d}-dimensional item vectors, but the model's programs "
                                   "embed the item code themselves (its manifest has no item_vectors): recompute "
                                   "the table for this bundle")
            return
        if not d:
            raise PayloadError(f"item table: carries no item vectors, but the model's programs take "
                               f"{spec.dim}-dimensional ones (manifest item_vectors, sha256 {spec.sha256[:12]}…): "
                               "recompute it with `fedpa-export items --student …`")
        if d != spec.dim:
            raise PayloadError(f"item table: vector_dim {d} does not match the model's item_vectors dim {spec.dim}: "
                               "it was computed for another student")
        if meta.vector_sha256 != spec.sha256:
            raise PayloadError(f"item table: vector_sha256 {meta.vector_sha256[:12]}… is not the model's "
                               f"item_vectors sha256 {spec.sha256[:12]}…: its vectors are another student's "
                               "(pass the bundle's own student to `fedpa-export items --student`)")
        assert self.vector is not None and self.vector_scale is not None  # __post_init__: d > 0 has them
        assert self.default_vector is not None and self.default_vector_scale is not None
        codes = np.concatenate([[0], self.item_code.astype(np.int64)])  # the default row is the OOV code 0's
        q = np.concatenate([self.default_vector, self.vector])
        scale = np.concatenate([self.default_vector_scale, self.vector_scale])
        if int(codes.max()) >= spec.rows:
            raise PayloadError(f"item table: item_code {int(codes.max())} has no row in the model's "
                               f"{spec.rows} item vectors")
        unique, first, which = np.unique(codes, return_index=True, return_inverse=True)
        same = (q == q[first][which]).all(axis=1) & (scale.view(np.uint32) == scale[first].view(np.uint32)[which])
        if not same.all():
            code = int(codes[int(np.flatnonzero(~same)[0])])
            raise PayloadError(f"item table: item code {code} has rows with different vectors; one code has "
                               "one vector")
        if len(unique) == spec.rows:  # every code's row is here: the digest can be recomputed
            digest = vectors_digest(q[first], scale[first])
            if digest != spec.sha256:
                raise PayloadError(f"item table: its vectors hash to {digest[:12]}…, not its vector_sha256 "
                                   f"{spec.sha256[:12]}…: the rows are not the model's student's")

"""Categorical feature encoders and the feature schema that travels in the bundle manifest.

Every model input is an integer code. A feature is one of three kinds, all with code 0 meaning
"out of vocabulary or missing" so that a device meeting an unseen value still has a valid input:

* a **vocabulary** feature: code ``i + 1`` is ``vocabulary[i]`` (raw values compared as canonical
  strings, see :func:`canonical_strings`);
* a **bucketised** numeric feature: ``log1p(max(v, 0))`` then quantile edges fitted on the
  pre-training (open) data; codes ``1 .. len(edges) + 1``;
* a **hashed** feature (the optional item-id hash): a stable CRC32 of the raw id modulo
  ``hash_buckets``, plus one. CRC32 does not depend on Python's per-process hash salt, so phones and
  servers agree.

Usage: ``codes = schema.features[0].encode(["3", 4, None])``.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from fedpa.errors import DataError

__all__ = [
    "SCHEMA_FORMAT_VERSION",
    "CategoricalFeature",
    "FeatureSchema",
    "canonical_strings",
    "fit_bucket_edges",
    "fit_vocabulary",
    "stable_hash_codes",
]

SCHEMA_FORMAT_VERSION = 1
_MAX_EXACT_INT = 2.0**53  # floats beyond this cannot be told apart from their integer neighbours


def _canonical_scalar(value: Any) -> str | None:
    """One raw value as its canonical string (None when missing)."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, bool | np.bool_):
        return "1" if value else "0"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        f = float(value)
        if math.isnan(f):
            return None
        if f.is_integer() and abs(f) < _MAX_EXACT_INT:
            return str(int(f))
        return repr(f)
    text = str(value).strip()
    return text or None


def canonical_strings(values: Sequence[Any] | np.ndarray | pd.Series) -> np.ndarray:
    """Raw values → object array of canonical strings, ``None`` where missing.

    Why: CSV readers turn the integer code 3 into ``3``, ``3.0`` (a column with gaps) or ``"3"``
    depending on the file; all three must hit the same vocabulary entry. Integral numbers become
    their integer text, other floats ``repr``; strings are stripped; ``""``, NaN and None are missing.
    Strings are not parsed as numbers (``"007"`` stays ``"007"``).
    """
    if isinstance(values, pd.Series | pd.Index):
        plain_numeric = isinstance(values.dtype, np.dtype) and values.dtype.kind in "iufb"
        arr = values.to_numpy() if plain_numeric else values.to_numpy(dtype=object)
    elif isinstance(values, np.ndarray):
        arr = values
    else:
        arr = np.asarray(list(values), dtype=object)
    arr = arr.reshape(-1)
    if arr.dtype.kind in "iub":
        return arr.astype(np.int64).astype(str).astype(object)
    if arr.dtype.kind == "f":
        f = arr.astype(np.float64)
        out = np.full(f.shape, None, dtype=object)
        finite = np.isfinite(f)
        integral = finite & (np.floor(f) == f) & (np.abs(f) < _MAX_EXACT_INT)
        out[integral] = f[integral].astype(np.int64).astype(str)
        other = finite & ~integral
        out[other] = [repr(float(v)) for v in f[other]]
        return out
    return np.array([_canonical_scalar(v) for v in arr], dtype=object)


def stable_hash_codes(values: Sequence[Any] | np.ndarray, buckets: int) -> np.ndarray:
    """CRC32 of each canonical string modulo ``buckets``, plus one (0 stays missing)."""
    strings = canonical_strings(values)
    out = np.zeros(len(strings), dtype=np.int64)
    for i, s in enumerate(strings):
        if s is not None:
            out[i] = zlib.crc32(s.encode("utf-8")) % buckets + 1
    return out


def _as_float(values: Sequence[Any] | np.ndarray | pd.Series) -> np.ndarray:
    """Numbers as float64, NaN where missing or not a number (numeric arrays skip the slow path)."""
    arr = values.to_numpy() if isinstance(values, pd.Series) else np.asarray(values)
    if arr.dtype.kind in "iufb":
        return arr.astype(np.float64).reshape(-1)
    coerced = pd.to_numeric(pd.Series(arr.astype(object).reshape(-1)), errors="coerce")
    return coerced.to_numpy(dtype=np.float64, na_value=np.nan)


@dataclass(frozen=True)
class CategoricalFeature:
    """One model input column: a vocabulary, bucket edges or a hash, with 0 = OOV/missing."""

    name: str
    side: Literal["user", "item"]
    vocabulary: tuple[str, ...] = ()
    bucket_edges: tuple[float, ...] | None = None  # in log1p space; set for bucketised numerics
    hash_buckets: int = 0  # > 0 for a hashed feature (item_id_hash)

    def __post_init__(self) -> None:
        if self.side not in ("user", "item"):
            raise DataError(f"feature {self.name!r}: side must be 'user' or 'item', got {self.side!r}")
        if self.hash_buckets < 0:
            raise DataError(f"feature {self.name!r}: hash_buckets must be ≥ 0, got {self.hash_buckets}")

    @property
    def kind(self) -> Literal["vocabulary", "bucketised", "hashed"]:
        """Which of the three encodings this feature uses."""
        if self.hash_buckets > 0:
            return "hashed"
        if self.bucket_edges is not None:
            return "bucketised"
        return "vocabulary"

    @property
    def cardinality(self) -> int:
        """Number of codes including the OOV code 0 (the embedding table's row count)."""
        if self.hash_buckets > 0:
            return self.hash_buckets + 1
        if self.bucket_edges is not None:
            return len(self.bucket_edges) + 2
        return len(self.vocabulary) + 1

    def encode(self, raw: Sequence[Any] | np.ndarray | pd.Series) -> np.ndarray:
        """Raw values → int64 codes; unseen, missing and NaN values map to 0."""
        if self.hash_buckets > 0:
            return stable_hash_codes(raw, self.hash_buckets)
        if self.bucket_edges is not None:
            return self._encode_numeric(raw)
        strings = canonical_strings(raw)
        codes = pd.Index(self.vocabulary, dtype=object).get_indexer(strings)
        return codes.astype(np.int64) + 1  # -1 (unseen or missing) becomes 0

    def _encode_numeric(self, raw: Sequence[Any] | np.ndarray | pd.Series) -> np.ndarray:
        v = _as_float(raw)
        out = np.zeros(v.shape, dtype=np.int64)
        ok = np.isfinite(v)
        logv = np.log1p(np.maximum(v[ok], 0.0))
        out[ok] = np.searchsorted(np.asarray(self.bucket_edges, dtype=np.float64), logv, side="right") + 1
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form for the manifest (edges as exact Python floats)."""
        return {
            "name": self.name,
            "side": self.side,
            "vocabulary": list(self.vocabulary),
            "bucket_edges": None if self.bucket_edges is None else [float(e) for e in self.bucket_edges],
            "hash_buckets": int(self.hash_buckets),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CategoricalFeature:
        """Inverse of :meth:`to_dict`."""
        edges = d.get("bucket_edges")
        return cls(
            name=str(d["name"]),
            side=d["side"],
            vocabulary=tuple(str(v) for v in d.get("vocabulary", ())),
            bucket_edges=None if edges is None else tuple(float(e) for e in edges),
            hash_buckets=int(d.get("hash_buckets", 0)),
        )


def fit_vocabulary(values: Sequence[Any] | np.ndarray | pd.Series, *, min_count: int = 1) -> tuple[str, ...]:
    """Sorted distinct canonical values seen at least ``min_count`` times.

    Sorted numerically when every value is an integer (codes then follow the raw order, which
    keeps manifests readable), otherwise as strings; either way deterministic.
    """
    strings = pd.Series(canonical_strings(values), dtype=object).dropna()
    counts = strings.value_counts()
    kept = [str(v) for v in counts.index[counts.to_numpy() >= min_count]]
    try:
        return tuple(sorted(kept, key=int))
    except ValueError:
        return tuple(sorted(kept))


def fit_bucket_edges(values: Sequence[Any] | np.ndarray | pd.Series, *, n_buckets: int = 10) -> tuple[float, ...]:
    """Distinct inner quantile edges of ``log1p(max(v, 0))`` over the finite values."""
    v = _as_float(values)
    v = np.log1p(np.maximum(v[np.isfinite(v)], 0.0))
    if v.size == 0 or n_buckets < 2:
        return ()
    qs = np.quantile(v, np.arange(1, n_buckets) / n_buckets)
    return tuple(float(e) for e in np.unique(qs))


@dataclass(frozen=True)
class FeatureSchema:
    """The ordered model inputs: user features first, then item features."""

    features: tuple[CategoricalFeature, ...]
    group_attributes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        names = [f.name for f in self.features]
        if len(set(names)) != len(names):
            raise DataError(f"feature schema: duplicate feature names in {names}")
        sides = [f.side for f in self.features]
        if sides != sorted(sides, key=lambda s: s != "user"):
            raise DataError(f"feature schema: user features must come before item features, got {sides}")
        users = {f.name for f in self.features if f.side == "user"}
        for g in self.group_attributes:
            if g not in users:
                raise DataError(f"feature schema: group attribute {g!r} is not a user feature ({sorted(users)})")

    @property
    def cardinalities(self) -> tuple[int, ...]:
        """Embedding table sizes, one per column of ``x``."""
        return tuple(f.cardinality for f in self.features)

    @property
    def names(self) -> tuple[str, ...]:
        """Feature names in column order."""
        return tuple(f.name for f in self.features)

    @property
    def user_feature_positions(self) -> tuple[int, ...]:
        """Columns of ``x`` that hold user features."""
        return tuple(i for i, f in enumerate(self.features) if f.side == "user")

    @property
    def item_feature_positions(self) -> tuple[int, ...]:
        """Columns of ``x`` that hold item features."""
        return tuple(i for i, f in enumerate(self.features) if f.side == "item")

    @property
    def group_positions(self) -> tuple[int, ...]:
        """Columns of ``x`` (equally of ``user_x``) holding the group attributes, in their order."""
        index = {f.name: i for i, f in enumerate(self.features)}
        return tuple(index[g] for g in self.group_attributes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form; ``FeatureSchema.from_dict(s.to_dict()) == s``."""
        return {
            "format_version": SCHEMA_FORMAT_VERSION,
            "features": [f.to_dict() for f in self.features],
            "group_attributes": list(self.group_attributes),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureSchema:
        """Inverse of :meth:`to_dict`; refuses unknown format versions."""
        version = d.get("format_version", SCHEMA_FORMAT_VERSION)
        if version != SCHEMA_FORMAT_VERSION:
            raise DataError(f"feature schema: unknown format_version {version!r}")
        return cls(
            features=tuple(CategoricalFeature.from_dict(f) for f in d["features"]),
            group_attributes=tuple(str(g) for g in d.get("group_attributes", ())),
        )

    def _encode_side(self, table: pd.DataFrame, side: str, id_column: str) -> np.ndarray:
        feats = [f for f in self.features if f.side == side]
        out = np.zeros((len(table), len(feats)), dtype=np.int64)
        for j, f in enumerate(feats):
            column = f.name if f.name in table.columns else (id_column if f.kind == "hashed" else None)
            if column is None or column not in table.columns:
                raise DataError(f"{side} table: missing column {f.name!r} required by the feature schema")
            out[:, j] = f.encode(table[column])
        return out

    def encode_users(self, user_table: pd.DataFrame) -> np.ndarray:
        """[U, n_user_features] codes; columns matched by feature name."""
        return self._encode_side(user_table, "user", "user_id")

    def encode_items(self, item_table: pd.DataFrame) -> np.ndarray:
        """[I, n_item_features] codes; a hashed feature reads its own column or else ``item_id``."""
        return self._encode_side(item_table, "item", "item_id")

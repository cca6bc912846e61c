"""Categorical feature encoders and the feature schema that travels in the bundle manifest.

Every model input is an integer code. A feature is one of three kinds, all with code 0 meaning
"out of vocabulary or missing" so that a device meeting an unseen value still has a valid input:

* a **vocabulary** feature: code ``i + 1`` is ``vocabulary[i]`` (raw values compared as canonical
  strings, see :func:`canonical_strings`);
* a **bucketised** numeric feature: ``log1p(max(v, 0))`` then quantile edges fitted on the
  pre-training (open) data; codes ``1 .. len(edges) + 1``;
* a **hashed** feature (the optional item-id hash): a stable CRC32 of the raw id modulo
  ``hash_buckets``, plus one. CRC32 does not depend on Python's per-process hash salt, so phones and
  servers agree;
* a **coded** feature: the code itself arrives ready-made (``1 .. n_codes``), e.g. the item table's
  frequent-item code, whose id→code map lives in the item table and not in the manifest.

Each feature also declares its **source** — where a running system gets the value (issue 14):
``user`` and ``item`` (the feature tables, today's columns), ``item_table`` (served per candidate
by the aggregator's item table: item code and item statistics) and ``history`` (computed on the
device from its own earlier rows, never uploaded). ``user`` features are on the user side, every
other source on the item (candidate) side, so the model still sees "user columns, then the rest".
Numeric buckets apply ``log1p(max(v, 0))`` (counts) or no transform (``"identity"``: click-rates and
signed click-rate deltas) before the edges.

Usage: ``codes = schema.features[0].encode(["3", 4, None])``.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from fedpa.errors import DataError

__all__ = [
    "FEATURE_SOURCES",
    "ROW_COLUMNS",
    "SCHEMA_FORMAT_VERSION",
    "CategoricalFeature",
    "FeatureSchema",
    "canonical_strings",
    "feature_columns",
    "fit_bucket_edges",
    "fit_vocabulary",
    "stable_hash_codes",
]

SCHEMA_FORMAT_VERSION = 1  # new keys (source, n_codes, …) are optional with old defaults: still version 1
FEATURE_SOURCES: tuple[str, ...] = ("user", "item", "item_table", "history")
Source = Literal["user", "item", "item_table", "history"]
Transform = Literal["log1p", "identity"]
# Columns a table of rows may hold beside the features: ids, label and time, never read as model inputs.
ROW_COLUMNS: tuple[str, ...] = ("user_id", "item_id", "label", "timestamp")
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


def stable_hash_codes(values: Sequence[Any] | np.ndarray | pd.Series, buckets: int) -> np.ndarray:
    """CRC32 of each canonical string modulo ``buckets``, plus one (0 stays missing)."""
    strings = canonical_strings(values)
    out = np.zeros(len(strings), dtype=np.int64)
    for i, s in enumerate(strings):
        if s is not None:
            out[i] = zlib.crc32(s.encode("utf-8")) % buckets + 1
    return out


def _bucket_space(v: np.ndarray, transform: str) -> np.ndarray:
    """Finite values mapped to the space the edges live in (see the module docstring)."""
    return np.log1p(np.maximum(v, 0.0)) if transform == "log1p" else v


def _as_float(values: Sequence[Any] | np.ndarray | pd.Series) -> np.ndarray:
    """Numbers as float64, NaN where missing or not a number (numeric arrays skip the slow path)."""
    arr = values.to_numpy() if isinstance(values, pd.Series) else np.asarray(values)
    if arr.dtype.kind in "iufb":
        return arr.astype(np.float64).reshape(-1)
    coerced = pd.to_numeric(pd.Series(arr.astype(object).reshape(-1)), errors="coerce")
    return coerced.to_numpy(dtype=np.float64, na_value=np.nan)


@dataclass(frozen=True)
class CategoricalFeature:
    """One model input column: a vocabulary, bucket edges, a hash or ready codes, with 0 = OOV/missing."""

    name: str
    side: Literal["user", "item"]
    vocabulary: tuple[str, ...] = ()
    bucket_edges: tuple[float, ...] | None = None  # in bucket_transform space; set for bucketised numerics
    hash_buckets: int = 0  # > 0 for a hashed feature (item_id_hash)
    source: Source | None = None  # None → the side ("user" or "item"), i.e. a feature-table column
    n_codes: int = 0  # > 0 for a coded feature: codes 1..n_codes arrive ready-made (item_code)
    bucket_transform: Transform = "log1p"
    signal: str = ""  # item_table/history: which statistic (see fedpa.signals)
    of: str = ""  # item_table/history: the group attribute or item field the statistic is taken over

    def __post_init__(self) -> None:
        if self.side not in ("user", "item"):
            raise DataError(f"feature {self.name!r}: side must be 'user' or 'item', got {self.side!r}")
        if self.source is None:
            object.__setattr__(self, "source", self.side)  # frozen: set the derived default once
        if self.source not in FEATURE_SOURCES:
            raise DataError(f"feature {self.name!r}: source must be one of {FEATURE_SOURCES}, got {self.source!r}")
        if (self.source == "user") != (self.side == "user"):
            raise DataError(f"feature {self.name!r}: source {self.source!r} does not fit side {self.side!r} "
                            "(only 'user' features are on the user side)")
        if self.hash_buckets < 0 or self.n_codes < 0:
            raise DataError(f"feature {self.name!r}: hash_buckets and n_codes must be ≥ 0, "
                            f"got {self.hash_buckets}, {self.n_codes}")
        if self.bucket_transform not in ("log1p", "identity"):
            raise DataError(f"feature {self.name!r}: bucket_transform must be 'log1p' or 'identity', "
                            f"got {self.bucket_transform!r}")
        if self.bucket_edges is not None and list(self.bucket_edges) != sorted(self.bucket_edges):
            raise DataError(f"feature {self.name!r}: bucket edges must be ascending, got {self.bucket_edges}")

    @property
    def kind(self) -> Literal["vocabulary", "bucketised", "hashed", "coded"]:
        """Which of the four encodings this feature uses."""
        if self.n_codes > 0:
            return "coded"
        if self.hash_buckets > 0:
            return "hashed"
        if self.bucket_edges is not None:
            return "bucketised"
        return "vocabulary"

    @property
    def cardinality(self) -> int:
        """Number of codes including the OOV code 0 (the embedding table's row count)."""
        if self.n_codes > 0:
            return self.n_codes + 1
        if self.hash_buckets > 0:
            return self.hash_buckets + 1
        if self.bucket_edges is not None:
            return len(self.bucket_edges) + 2
        return len(self.vocabulary) + 1

    def encode(self, raw: Sequence[Any] | np.ndarray | pd.Series) -> np.ndarray:
        """Raw values → int64 codes; unseen, missing and NaN values map to 0.

        A coded feature's "raw" values are its codes: out-of-range or missing ones become 0.
        """
        if self.n_codes > 0:
            v = _as_float(raw)
            ok = np.isfinite(v) & (v >= 1) & (v <= self.n_codes) & (np.floor(v) == v)
            return np.where(ok, np.nan_to_num(v), 0).astype(np.int64)
        if self.hash_buckets > 0:
            return stable_hash_codes(raw, self.hash_buckets)
        if self.bucket_edges is not None:
            return self._encode_numeric(raw)
        strings = canonical_strings(raw)
        codes = pd.Index(self.vocabulary, dtype=object).get_indexer(pd.Index(strings, dtype=object))
        return codes.astype(np.int64) + 1  # -1 (unseen or missing) becomes 0

    def _encode_numeric(self, raw: Sequence[Any] | np.ndarray | pd.Series) -> np.ndarray:
        v = _as_float(raw)
        out = np.zeros(v.shape, dtype=np.int64)
        ok = np.isfinite(v)
        edges = np.asarray(self.bucket_edges, dtype=np.float64)
        out[ok] = np.searchsorted(edges, _bucket_space(v[ok], self.bucket_transform), side="right") + 1
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form for the manifest (edges as exact Python floats)."""
        return {
            "name": self.name,
            "side": self.side,
            "source": self.source,
            "vocabulary": list(self.vocabulary),
            "bucket_edges": None if self.bucket_edges is None else [float(e) for e in self.bucket_edges],
            "bucket_transform": self.bucket_transform,
            "hash_buckets": int(self.hash_buckets),
            "n_codes": int(self.n_codes),
            "signal": self.signal,
            "of": self.of,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CategoricalFeature:
        """Inverse of :meth:`to_dict`; a manifest written before issue 14 (no source, …) still reads."""
        edges = d.get("bucket_edges")
        return cls(
            name=str(d["name"]),
            side=d["side"],
            vocabulary=tuple(str(v) for v in d.get("vocabulary", ())),
            bucket_edges=None if edges is None else tuple(float(e) for e in edges),
            hash_buckets=int(d.get("hash_buckets", 0)),
            source=d.get("source"),
            n_codes=int(d.get("n_codes", 0)),
            bucket_transform=d.get("bucket_transform", "log1p"),
            signal=str(d.get("signal", "")),
            of=str(d.get("of", "")),
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


def fit_bucket_edges(values: Sequence[Any] | np.ndarray | pd.Series, *, n_buckets: int = 10,
                     transform: Transform = "log1p") -> tuple[float, ...]:
    """Distinct inner quantile edges of the transformed finite values (``log1p(max(v, 0))`` by default)."""
    v = _as_float(values)
    v = _bucket_space(v[np.isfinite(v)], transform)
    if v.size == 0 or n_buckets < 2:
        return ()
    qs = np.quantile(v, np.arange(1, n_buckets) / n_buckets)
    return tuple(float(e) for e in np.unique(qs))


@dataclass(frozen=True)
class FeatureSchema:
    """The ordered model inputs: user features first, then item-side features (any non-user source).

    ``signals`` holds the parameters shared by the ``item_table`` and ``history`` columns (priors,
    smoothing, which kinds are selected): :class:`fedpa.signals.SignalSpec` as a dict, empty for a
    base schema.
    """

    features: tuple[CategoricalFeature, ...]
    group_attributes: tuple[str, ...] = ()
    signals: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = [f.name for f in self.features]
        if len(set(names)) != len(names):
            raise DataError(f"feature schema: duplicate feature names in {names}")
        sides = [f.side for f in self.features]
        if sides != sorted(sides, key=lambda s: s != "user"):
            raise DataError(f"feature schema: user features must come before item features, got {sides}")
        sources = [str(f.source) for f in self.features]
        if sources != sorted(sources, key=FEATURE_SOURCES.index):
            raise DataError(f"feature schema: columns must be ordered by source {FEATURE_SOURCES}, got {sources}")
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
        """Columns of ``x`` on the item (candidate) side: every source except ``user``."""
        return tuple(i for i, f in enumerate(self.features) if f.side == "item")

    @property
    def n_signal_features(self) -> int:
        """How many trailing columns are statistic buckets (``item_table``/``history``, not the item code).

        The student embeds them narrower (``BackboneConfig.n_signal_features``); the item code keeps
        the full width (narrowing it cost 0.003 validation GAUC on KuaiSAR-R). Columns are ordered by
        source and the item code comes first among the ``item_table`` ones, so the statistics form
        the tail.
        """
        n = 0
        for f in reversed(self.features):
            if f.source not in ("item_table", "history") or f.signal in ("", "code"):
                break
            n += 1
        return n

    def positions(self, source: str) -> tuple[int, ...]:
        """Columns of ``x`` whose feature comes from ``source`` (one of ``FEATURE_SOURCES``)."""
        if source not in FEATURE_SOURCES:
            raise DataError(f"unknown feature source {source!r}; expected one of {FEATURE_SOURCES}")
        return tuple(i for i, f in enumerate(self.features) if f.source == source)

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
            "signals": dict(self.signals),
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
            signals=dict(d.get("signals") or {}),
        )

    def _encode_side(self, table: pd.DataFrame, side: str) -> np.ndarray:
        feats = [f for f in self.features if f.source == side]  # feature-table columns only
        columns = feature_columns(feats, table.columns, where=f"{side} table")
        out = np.zeros((len(table), len(feats)), dtype=np.int64)
        for j, f in enumerate(feats):
            out[:, j] = f.encode(table[columns[f.name]])
        return out

    def encode_users(self, user_table: pd.DataFrame) -> np.ndarray:
        """[U, n_user_features] codes; columns matched by feature name (:func:`feature_columns`)."""
        return self._encode_side(user_table, "user")

    def encode_items(self, item_table: pd.DataFrame) -> np.ndarray:
        """[I, n] codes of the ``item``-source features (the item feature table's columns).

        A hashed feature reads its own column or else ``item_id``. ``item_table`` and ``history``
        columns are not in the feature table: :mod:`fedpa.signals` computes them.
        """
        return self._encode_side(item_table, "item")


def feature_columns(features: Iterable[CategoricalFeature], columns: Collection[str], *, where: str = "table"
                    ) -> dict[str, str]:
    """The column each feature reads from a table with ``columns``: the one missing-column rule.

    Every path into a program encodes through it (the dataset pipeline, hence the simulation,
    golden vectors and the demo; a device's own files through ``FeatureEncoder.encode_table``).
    A feature reads the column of its own name. The schema declares one default: a hashed feature
    (an id hash, e.g. ``item_id_hash``) reads its side's id column (``item_id``/``user_id``) when its
    own is absent. Any other absent column is a DataError naming every one of them — never OOV 0
    for a whole column, which would score every row with the wrong embedding.
    """
    available = set(columns)
    chosen: dict[str, str] = {}
    missing: list[str] = []
    for f in features:
        default = f"{f.side}_id" if f.kind == "hashed" else None
        if f.name in available:
            chosen[f.name] = f.name
        elif default is not None and default in available:
            chosen[f.name] = default
        else:
            missing.append(repr(f.name) + (f" (or {default!r})" if default else ""))
    if missing:
        raise DataError(f"{where}: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} required by "
                        "the feature schema")
    return chosen

"""Turning a client's feature rows into the bundle's input codes, or refusing clearly.

A bundle fixes its feature schema (names, order, vocabularies, bucket edges) at export time. A
device or a simulation may hold rows encoded with *another* schema (a dataset loaded later, with
a grown vocabulary) or raw values. Feeding those codes unchanged would silently score the wrong
embeddings, so every path into a program goes through :class:`FeatureEncoder`: a device's raw
files (:meth:`FeatureEncoder.encode_table`), codes of another schema (:meth:`~FeatureEncoder.recode`),
signal columns (:meth:`~FeatureEncoder.fill`). The dataset pipeline (hence the simulation, golden
vectors and the demo) encodes its tables with the same per-feature encodings and the same
missing-column rule, :func:`fedpa.data.schema.feature_columns`: a missing feature is a precise
error unless the schema declares its default (a hashed id feature reads the side's id column).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from fedpa.data.schema import FEATURE_SOURCES, ROW_COLUMNS, feature_columns
from fedpa.errors import BundleError, DataError

if TYPE_CHECKING:
    import pandas as pd

    from fedpa.data.schema import CategoricalFeature, FeatureSchema
    from fedpa.runtime.items import ItemRows
    from fedpa.signals import HistoryState

__all__ = ["FeatureEncoder", "schema_differences"]


def schema_differences(expected: FeatureSchema, found: FeatureSchema) -> list[str]:
    """Human-readable differences between two schemas (empty when identical)."""
    diffs: list[str] = []
    if expected.names != found.names:
        diffs.append(f"features {list(found.names)} != bundle's {list(expected.names)}")
    for a in expected.features:
        b = next((f for f in found.features if f.name == a.name), None)
        if b is not None and a.to_dict() != b.to_dict():
            diffs.append(f"feature {a.name!r} encodes differently: {_feature_difference(a, b)}")
    if tuple(expected.group_attributes) != tuple(found.group_attributes):
        diffs.append(f"group attributes {list(found.group_attributes)} != bundle's {list(expected.group_attributes)}")
    return diffs


def _feature_difference(bundle: CategoricalFeature, found: CategoricalFeature) -> str:
    """What actually differs between two encodings of one feature, the first differing value shown."""
    if bundle.kind != found.kind:
        return f"{found.kind} ({found.cardinality} codes) vs bundle's {bundle.kind} ({bundle.cardinality} codes)"
    if bundle.side != found.side:
        return f"{found.side}-side vs bundle's {bundle.side}-side"
    if bundle.kind == "hashed":
        return f"{found.hash_buckets} hash buckets vs bundle's {bundle.hash_buckets}"
    if bundle.kind == "bucketised":
        mine, theirs = tuple(found.bucket_edges or ()), tuple(bundle.bucket_edges or ())
        if mine != theirs:
            return "bucket edges (log1p space) " + _first_difference(mine, theirs, lambda v: f"{v:.6g}")
    if tuple(found.vocabulary) != tuple(bundle.vocabulary):
        return "vocabulary " + _first_difference(found.vocabulary, bundle.vocabulary, repr)
    keys = sorted(k for k, v in bundle.to_dict().items() if found.to_dict().get(k) != v)
    return f"{', '.join(keys)} differ"


_T = TypeVar("_T")


def _first_difference(found: Sequence[_T], bundle: Sequence[_T], show: Callable[[_T], str]) -> str:
    for i, (x, y) in enumerate(zip(found, bundle, strict=False)):
        if x != y:
            return f"differ at position {i}: {show(x)} vs bundle's {show(y)}"
    n, m = len(found), len(bundle)
    if n > m:
        return f"has {n - m} more than the bundle's {m}: {', '.join(show(v) for v in found[m:m + 3])}" + (
            ", …" if n - m > 3 else "")
    if n < m:
        return f"lacks the last {m - n} of the bundle's {m}: {', '.join(show(v) for v in bundle[n:n + 3])}" + (
            ", …" if m - n > 3 else "")
    return "is the same; other settings differ"


class FeatureEncoder:
    """Raw values or foreign codes → ``[N, F]`` int64 codes in the bundle's column order.

    Usage: ``x = bundle.encoder().encode({"reco_active_level": ["2"], "item_type": [0], ...})``.
    """

    def __init__(self, schema: FeatureSchema) -> None:
        self.schema = schema

    def check(self, other: FeatureSchema) -> None:
        """Refuse a schema that is not exactly the bundle's (BundleError listing the differences)."""
        diffs = schema_differences(self.schema, other)
        if diffs:
            raise BundleError("feature schema mismatch: " + "; ".join(diffs))

    def encode(self, columns: Mapping[str, Sequence[object] | np.ndarray]) -> np.ndarray:
        """Encode raw values given per feature name; every bundle feature is required, no others allowed."""
        names = self.schema.names
        missing = [n for n in names if n not in columns]
        unknown = sorted(set(columns) - set(names))
        if missing or unknown:
            raise BundleError(f"feature rows: missing features {missing}, unknown features {unknown} "
                              f"(the bundle expects {list(names)})")
        lengths = {len(np.asarray(columns[n], dtype=object).reshape(-1)) for n in names}
        if len(lengths) != 1:
            raise BundleError(f"feature rows: columns have different lengths {sorted(lengths)}")
        return self.encode_table(columns, sources=FEATURE_SOURCES, rows=lengths.pop())

    def encode_table(self, table: Mapping[str, Sequence[object] | np.ndarray] | pd.DataFrame, *,
                     sources: Sequence[str] = ("user", "item"),
                     rows: int | None = None, where: str = "rows") -> np.ndarray:
        """Raw columns (a DataFrame, or name → values) → ``[N, F]`` int64 codes in the bundle's order.

        Features of ``sources`` are read (missing ones: :func:`~fedpa.data.schema.feature_columns`'s
        precise DataError); the others stay 0 — a device's files hold user and item columns, the
        signal columns are :meth:`fill`'s. A column that is neither a feature nor one of
        ``ROW_COLUMNS`` (ids, label, timestamp) is refused: a misspelt feature must not vanish.
        """
        names = [str(c) for c in table.keys()]
        unknown = sorted(set(names) - set(self.schema.names) - set(ROW_COLUMNS))
        if unknown:
            raise DataError(f"{where}: unknown column{'s' if len(unknown) > 1 else ''} {unknown}: not a feature of the "
                            f"bundle's schema {list(self.schema.names)} nor one of {list(ROW_COLUMNS)}")
        read = [f for f in self.schema.features if f.source in sources]
        columns = feature_columns(read, names, where=where)
        n = rows if rows is not None else len(table[names[0]]) if names else 0
        x = np.zeros((n, len(self.schema.features)), np.int64)
        for j, f in enumerate(self.schema.features):
            if f.source in sources:
                x[:, j] = f.encode(table[columns[f.name]])
        return x

    def positions(self, source: str) -> list[int]:
        """Columns of ``x`` whose feature has this ``source`` (user, item, item_table, history)."""
        return [j for j, f in enumerate(self.schema.features) if getattr(f, "source", f.side) == source]

    def fill(self, x: np.ndarray, *, items: ItemRows | None = None, history: HistoryState | None = None,
             groups: Mapping[str, int] | None = None) -> np.ndarray:
        """Rows with their user/item columns encoded → the same rows with the signal columns filled.

        ``item_table`` columns come from the item table's rows for these candidates (a per-group
        column takes the device's own group value: ``groups``, by default the group columns of
        ``x[0]``), ``history`` columns from the device's history state as it is now (nothing is
        observed). A bundle without such columns needs neither; one with them refuses to guess.
        """
        x = np.array(x, dtype=np.int64, copy=True)
        if x.ndim != 2 or x.shape[1] != len(self.schema.features):
            raise BundleError(f"x has shape {x.shape}, the bundle's schema has {len(self.schema.features)} features")
        table_positions, history_positions = self.positions("item_table"), self.positions("history")
        if table_positions and len(x):
            if items is None:
                names = [self.schema.names[j] for j in table_positions]
                raise BundleError(f"features {names} come from the item table: look up the candidates' rows "
                                  "first (edge.items.ItemTableClient)")
            if len(items) != len(x):
                raise BundleError(f"{len(items)} item-table rows for {len(x)} candidates")
            if groups is None:
                groups = {a: int(x[0, p]) for a, p in zip(self.schema.group_attributes, self.schema.group_positions,
                                                          strict=True)}
            columns = items.columns_for(self.schema, groups)
            for j in table_positions:
                x[:, j] = columns[self.schema.names[j]]
        if history_positions and len(x):
            if history is None:
                names = [self.schema.names[j] for j in history_positions]
                raise BundleError(f"features {names} come from the device's history: pass its HistoryState")
            x[:, history_positions] = history.codes(x)
        cards = np.asarray(self.schema.cardinalities, np.int64)
        bad = np.argwhere((x < 0) | (x >= cards[None, :]))
        if bad.size:
            r, j = bad[0]
            raise BundleError(f"feature {self.schema.names[j]!r}: code {int(x[r, j])} outside 0..{int(cards[j]) - 1}")
        return x

    def recode(self, x: np.ndarray, source: FeatureSchema, *, allow_extra: bool = False) -> np.ndarray:
        """Codes under ``source`` (e.g. a Dataset's schema) → codes under the bundle's schema.

        Identical features are copied, vocabulary features with another vocabulary are mapped
        value by value (values the bundle never saw become OOV 0). Bucketised or hashed features
        with other edges cannot be recovered from codes: encode the raw values instead.
        Features the bundle does not know are refused unless ``allow_extra``.
        """
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != len(source.features):
            raise BundleError(f"x has shape {x.shape}, but its schema has {len(source.features)} features")
        index = {f.name: i for i, f in enumerate(source.features)}
        missing = [n for n in self.schema.names if n not in index]
        unknown = sorted(set(index) - set(self.schema.names))
        if missing or (unknown and not allow_extra):
            raise BundleError(f"feature schema mismatch: missing features {missing}, unknown features {unknown}")
        out = np.empty((x.shape[0], len(self.schema.features)), dtype=np.int64)
        for j, feature in enumerate(self.schema.features):
            src = source.features[index[feature.name]]
            out[:, j] = self._map_column(x[:, index[feature.name]].astype(np.int64), src, feature)
        return out

    @staticmethod
    def _map_column(codes: np.ndarray, src: CategoricalFeature, dst: CategoricalFeature) -> np.ndarray:
        if src.to_dict() == dst.to_dict():
            return codes
        if src.kind == dst.kind == "vocabulary":
            lookup = np.concatenate([[0], dst.encode(list(src.vocabulary))]).astype(np.int64)
            if codes.size and (codes.min() < 0 or codes.max() >= len(lookup)):
                raise BundleError(f"feature {dst.name!r}: codes outside its schema's 0..{len(lookup) - 1}")
            mapped: np.ndarray = lookup[codes]
            return mapped
        raise BundleError(f"feature {dst.name!r}: {src.kind} encoding differs from the bundle's {dst.kind} "
                          "encoding and cannot be mapped code by code; encode the raw values instead")

"""Item-side inputs (``source="item_table"``): item statistics as of a time, and frequent-item codes.

Statistics come from a log of *other* users' rows (the open users', or everyone's for the
research-only central ceiling) strictly earlier than the scored row: impressions, clicks, the
smoothed click-rate, and the smoothed click-rate within each value of every group attribute. The
dataset pipeline computes them per row (:func:`item_stats_asof`); the running system computes them
"as of now" per item (:func:`build_item_table`) and the aggregator serves the codes per candidate.
Both call the same counting primitive, smoothing and bucket edges, so training and serving agree.

Usage: ``table = build_item_table(schema, log, item_ids=ds.item_ids, item_codes=codes)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fedpa.data.schema import CategoricalFeature, FeatureSchema, fit_bucket_edges
from fedpa.errors import DataError
from fedpa.signals.asof import count_before, dense_keys
from fedpa.signals.spec import SignalSpec, smoothed_ctr

__all__ = [
    "ITEM_CODE",
    "ItemStats",
    "ItemTable",
    "StatLog",
    "build_item_table",
    "encode_item_signals",
    "fit_item_codes",
    "fit_item_table_features",
    "item_signal_values",
    "item_stats_asof",
]

ITEM_CODE = "item_code"
_COUNT_SIGNALS = (("item_impressions", "impressions"), ("item_clicks", "clicks"))


@dataclass(frozen=True)
class StatLog:
    """The rows statistics are counted from: dense user/item indices, ms timestamps, labels, group codes."""

    user: np.ndarray  # int64 [N]
    item: np.ndarray  # int64 [N]
    ts: np.ndarray  # int64 [N]
    y: np.ndarray  # float [N] 0/1
    groups: np.ndarray  # int64 [N, K] the row user's group codes, in schema.group_attributes order

    def __post_init__(self) -> None:
        n = len(self.user)
        if not (len(self.item) == len(self.ts) == len(self.y) == self.groups.shape[0] == n):
            raise DataError("StatLog: user, item, ts, y and groups must have the same number of rows")


@dataclass(frozen=True)
class ItemStats:
    """Raw counts per scored row (or per item for the table)."""

    impressions: np.ndarray  # int64 [N]
    clicks: np.ndarray  # float64 [N]
    group_impressions: np.ndarray  # int64 [N, K] within the row's own value of each group attribute
    group_clicks: np.ndarray  # float64 [N, K]


def item_stats_asof(log: StatLog, user: np.ndarray, item: np.ndarray, ts: np.ndarray,
                    groups: np.ndarray) -> ItemStats:
    """Per query row: the log's rows on the same item with ``ts`` strictly earlier, by OTHER users.

    The query user's own log rows are subtracted (an open user's training row must not count that
    user's own earlier clicks as "other users'", or the model would learn a signal a private device
    never receives). ``groups`` [N, K] are the query users' group codes.
    """
    user, item, ts = (np.asarray(a, np.int64).ravel() for a in (user, item, ts))
    groups = np.asarray(groups, np.int64).reshape(len(user), -1)
    n_log = len(log.user)

    def before(log_cols: Sequence[np.ndarray], q_cols: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        keys = dense_keys(*(np.concatenate([a, b]) for a, b in zip(log_cols, q_cols, strict=True)))
        return count_before(keys[:n_log], log.ts, log.y, keys[n_log:], ts)

    n, c = before([log.item], [item])
    n_own, c_own = before([log.item, log.user], [item, user])
    k = groups.shape[1]
    gn = np.zeros((len(user), k), np.int64)
    gc = np.zeros((len(user), k), np.float64)
    for j in range(k):
        n_g, c_g = before([log.item, log.groups[:, j]], [item, groups[:, j]])
        n_go, c_go = before([log.item, log.groups[:, j], log.user], [item, groups[:, j], user])
        gn[:, j], gc[:, j] = n_g - n_go, c_g - c_go
    return ItemStats(impressions=n - n_own, clicks=c - c_own, group_impressions=gn, group_clicks=gc)


def item_signal_values(stats: ItemStats, spec: SignalSpec, group_attributes: Sequence[str]) -> dict[str, np.ndarray]:
    """Raw values by feature name: counts, the smoothed CTR and the smoothed CTR within each group value.

    A group value's CTR is smoothed towards the item's own smoothed CTR (hierarchical), so a value
    with few impressions inherits the item's rate rather than the global one.
    """
    ctr = smoothed_ctr(stats.clicks, stats.impressions, spec.prior_ctr, spec.item_smoothing)
    out = {"item_impressions": stats.impressions.astype(np.float64), "item_clicks": stats.clicks, "item_ctr": ctr}
    for j, g in enumerate(group_attributes):
        out[f"item_ctr@{g}"] = smoothed_ctr(stats.group_clicks[:, j], stats.group_impressions[:, j], ctr,
                                            spec.group_smoothing)
    return out


def fit_item_codes(train_item: np.ndarray, n_items: int, *, min_count: int, cap: int) -> np.ndarray:
    """Dense item index → frequent-item code: rank by open-training-row count (ties by index), 0 = OOV.

    Only items with ``≥ min_count`` rows get a code, at most ``cap`` of them: a code needs enough
    rows to train its embedding, and every code is an embedding row shipped in the bundle.
    """
    counts = np.bincount(np.asarray(train_item, np.int64), minlength=n_items)
    order = np.lexsort((np.arange(n_items), -counts))
    order = order[counts[order] >= min_count][:cap]
    codes = np.zeros(n_items, np.int64)
    codes[order] = np.arange(1, order.size + 1)
    return codes


def fit_item_table_features(values: dict[str, np.ndarray], spec: SignalSpec, group_attributes: Sequence[str],
                            *, n_item_codes: int, n_buckets: int = 10) -> tuple[CategoricalFeature, ...]:
    """The ``item_table`` columns for the selected kinds, edges fitted on ``values`` (open training rows)."""
    feats: list[CategoricalFeature] = []
    if spec.has("item_code"):
        feats.append(CategoricalFeature(ITEM_CODE, "item", source="item_table", n_codes=max(int(n_item_codes), 1),
                                        signal="code"))
    if spec.has("item_stats"):
        for name, signal in _COUNT_SIGNALS:
            feats.append(CategoricalFeature(name, "item", source="item_table", signal=signal,
                                            bucket_edges=fit_bucket_edges(values[name], n_buckets=n_buckets)))
        ctr_names = [("item_ctr", "ctr", "")] + [(f"item_ctr@{g}", "group_ctr", g) for g in group_attributes]
        for name, signal, of in ctr_names:
            edges = fit_bucket_edges(values[name], n_buckets=2 * n_buckets, transform="identity")
            feats.append(CategoricalFeature(name, "item", source="item_table", signal=signal, of=of,
                                            bucket_edges=edges, bucket_transform="identity"))
    return tuple(feats)


def encode_item_signals(features: Sequence[CategoricalFeature], values: dict[str, np.ndarray],
                        item_codes: np.ndarray | None) -> np.ndarray:
    """[N, len(features)] codes: ``item_code`` passes through, statistics use their edges."""
    n = len(item_codes) if item_codes is not None else len(next(iter(values.values())))
    out = np.zeros((n, len(features)), np.int64)
    for j, f in enumerate(features):
        if f.signal == "code":
            if item_codes is None:
                raise DataError("item_code column requested but no item codes given")
            out[:, j] = f.encode(item_codes)
        else:
            out[:, j] = f.encode(values[f.name])
    return out


@dataclass(frozen=True)
class ItemTable:
    """What the aggregator serves per candidate: item code and statistic codes, as of ``as_of_ms``.

    ``common`` holds the columns that do not depend on the device ([I, C], in schema order, the
    group-CTR columns excluded); ``group_ctr[g]`` holds the group-CTR code for EVERY value of
    group attribute ``g`` ([I, cardinality_g]), so a lookup does not reveal the device's group —
    the device picks its own value's code. ``default_common`` and ``default_group_ctr`` code an
    unknown item (OOV code, zero counts, prior CTR): exactly what the dataset pipeline gives an item
    never seen before.
    """

    item_ids: np.ndarray  # raw ids (str), object [I]
    columns: tuple[str, ...]  # every item_table feature name, schema order
    common: np.ndarray  # int64 [I, C]
    common_columns: tuple[str, ...]
    group_ctr: dict[str, np.ndarray]  # group attribute → int64 [I, cardinality]
    default_common: np.ndarray  # int64 [C]
    default_group_ctr: dict[str, np.ndarray]  # group attribute → int64 [cardinality]
    as_of_ms: int | None

    def index_of(self, item_ids: Sequence[str] | np.ndarray) -> np.ndarray:
        """Row of each raw id, −1 when unknown (served as the default OOV row)."""
        import pandas as pd

        found = pd.Index(self.item_ids.astype(str)).get_indexer(pd.Index(np.asarray(item_ids).astype(str)))
        return np.asarray(found, dtype=np.int64)

    def candidate_codes(self, item_ids: Sequence[str] | np.ndarray, group_codes: Sequence[int]) -> np.ndarray:
        """[L, len(columns)] codes for one device's candidates, given its group codes (schema order)."""
        rows = self.index_of(item_ids)
        known = rows >= 0
        out = np.zeros((len(rows), len(self.columns)), np.int64)
        common = np.where(known[:, None], self.common[np.maximum(rows, 0)], self.default_common[None, :])
        for j, name in enumerate(self.common_columns):
            out[:, self.columns.index(name)] = common[:, j]
        for (g, table), code in zip(self.group_ctr.items(), group_codes, strict=True):
            v = int(code) if 0 <= int(code) < table.shape[1] else 0
            col = np.where(known, table[np.maximum(rows, 0), v], self.default_group_ctr[g][v])
            out[:, self.columns.index(f"item_ctr@{g}")] = col
        return out


def build_item_table(schema: FeatureSchema, log: StatLog, *, item_ids: np.ndarray, item_codes: np.ndarray,
                     as_of_ms: int | None = None) -> ItemTable:
    """The item table as of ``as_of_ms`` (``None``: every log row) for every item in ``item_ids``.

    ``item_ids`` are the raw ids by dense item index (``Dataset.item_ids``) and ``item_codes`` the
    frequent-item code of each (:func:`fit_item_codes`). Items with neither a code nor a log row are
    left out: they are served the default row, which codes them identically.
    """
    spec = SignalSpec.from_dict(schema.signals)
    feats = [f for f in schema.features if f.source == "item_table"]
    groups = schema.group_attributes
    cards = [schema.cardinalities[p] for p in schema.group_positions]
    keep = np.flatnonzero((np.asarray(item_codes) > 0) | (np.bincount(log.item, minlength=len(item_ids)) > 0))
    cutoff = np.iinfo(np.int64).max if as_of_ms is None else int(as_of_ms)
    visible = log.ts < cutoff
    n_items = len(item_ids)
    imp = np.bincount(log.item[visible], minlength=n_items)
    clk = np.bincount(log.item[visible], weights=log.y[visible].astype(np.float64), minlength=n_items)

    def values_for(n: np.ndarray, c: np.ndarray) -> dict[str, np.ndarray]:
        # group columns are filled per value below; zeros here only keep the shapes right
        zeros = np.zeros((len(n), len(groups)))
        return item_signal_values(ItemStats(n, c, zeros.astype(np.int64), zeros), spec, groups)

    stats_values = values_for(imp[keep], clk[keep])
    common_feats = [f for f in feats if f.signal != "group_ctr"]
    common = encode_item_signals(common_feats, stats_values, np.asarray(item_codes)[keep])
    zero = values_for(np.zeros(1, np.int64), np.zeros(1))
    default_common = encode_item_signals(common_feats, zero, np.zeros(1, np.int64))[0]
    group_ctr: dict[str, np.ndarray] = {}
    default_group: dict[str, np.ndarray] = {}
    by_name = {f.name: f for f in feats}
    item_ctr = stats_values["item_ctr"]
    for j, (g, card) in enumerate(zip(groups, cards, strict=True)):
        f = by_name.get(f"item_ctr@{g}")
        if f is None:
            continue
        flat = log.item[visible] * card + log.groups[visible, j]
        gn = np.bincount(flat, minlength=n_items * card).reshape(n_items, card)[keep]
        gcl = np.bincount(flat, weights=log.y[visible].astype(np.float64), minlength=n_items * card)
        gcl = gcl.reshape(n_items, card)[keep]
        rates = smoothed_ctr(gcl, gn, item_ctr[:, None], spec.group_smoothing)  # [kept items, card]
        group_ctr[g] = f.encode(rates.ravel()).reshape(gn.shape)
        default_group[g] = np.full(card, f.encode([spec.prior_ctr])[0], np.int64)
    return ItemTable(item_ids=np.asarray(item_ids, dtype=object)[keep], columns=tuple(f.name for f in feats),
                     common=common, common_columns=tuple(f.name for f in common_feats), group_ctr=group_ctr,
                     default_common=default_common, default_group_ctr=default_group, as_of_ms=as_of_ms)

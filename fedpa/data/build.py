"""RawTables → Dataset: dense ids, open/private split, chronological parts, encoders, codes.

The order matters and is the point of this module: the split is decided first, then every encoder
(vocabularies, bucket edges) is fitted on the open train rows only, so nothing about private users
leaks into the foundation model's inputs (docs/design.md §1).

Usage: ``ds = build_dataset(read_kuaisar(path), name="kuaisar-r", pool_attribute=..., ...)``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from fedpa.data.dataset import Dataset, Interactions
from fedpa.data.formats import RawTables
from fedpa.data.schema import CategoricalFeature, FeatureSchema, fit_bucket_edges, fit_vocabulary
from fedpa.data.signal_columns import signal_columns
from fedpa.data.splits import MIN_INTERACTIONS, assign_open_users, chronological_parts, time_cut
from fedpa.errors import ConfigError
from fedpa.signals import SignalSpec, select_kinds

__all__ = ["ITEM_ID_HASH", "build_dataset", "sorted_ids"]

logger = logging.getLogger(__name__)

ITEM_ID_HASH = "item_id_hash"
_SUBSAMPLE_STREAM = 104729  # RNG sub-stream for max_users, independent of the split's draws

SplitRule = Literal["attribute", "time"]
SPLIT_RULES: tuple[SplitRule, ...] = ("attribute", "time")


def split_rule(value: str) -> SplitRule:
    """An open/private rule given as text (a CLI flag), checked: ``"attribute"`` or ``"time"``."""
    for rule in SPLIT_RULES:
        if value == rule:
            return rule
    raise ConfigError(f"split must be 'attribute' or 'time', got {value!r}")


def sorted_ids(ids: np.ndarray) -> np.ndarray:
    """Distinct ids in a stable order: numerically when all are integers, else as strings."""
    uniq = np.asarray(pd.unique(pd.Series(ids, dtype=object)), dtype=object)
    as_num = pd.to_numeric(pd.Series(uniq), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    if len(uniq) and np.isfinite(as_num).all() and (np.floor(as_num) == as_num).all():
        order = np.lexsort((uniq.astype(str), as_num))
    else:
        order = np.argsort(uniq.astype(str), kind="stable")
    return np.asarray(uniq[order], dtype=object)


def _subsample_users(user_ids: np.ndarray, max_users: int | None, seed: int) -> np.ndarray:
    if max_users is None or max_users >= len(user_ids):
        return user_ids
    if max_users < 1:
        raise ConfigError(f"max_users must be ≥ 1, got {max_users}")
    rng = np.random.default_rng([_SUBSAMPLE_STREAM, int(seed)])
    keep = np.sort(rng.choice(len(user_ids), size=max_users, replace=False))
    return user_ids[keep]


def _require_user_column(users: pd.DataFrame, column: str, option: str) -> None:
    if column not in users.columns:
        available = [c for c in users.columns if c != "user_id"]
        raise ConfigError(f"{option}: {column!r} is not a user column (available: {available})")


def _fit_schema(
    raw: RawTables,
    users: pd.DataFrame,
    items: pd.DataFrame,
    user_features: Sequence[str],
    group_attributes: Sequence[str],
    train_users: np.ndarray,
    train_items: np.ndarray,
    train_rows_items: np.ndarray,
    *,
    item_id_buckets: int,
    n_buckets: int,
    min_count: int,
) -> FeatureSchema:
    """Vocabularies and bucket edges from the open train split only."""
    feats = [CategoricalFeature(c, "user", fit_vocabulary(users[c].to_numpy()[train_users], min_count=min_count))
             for c in user_features]
    feats += [CategoricalFeature(c, "item", fit_vocabulary(items[c].to_numpy()[train_items], min_count=min_count))
              for c in raw.item_features]
    for c in raw.numeric_item_features:
        edges = fit_bucket_edges(items[c].to_numpy()[train_rows_items], n_buckets=n_buckets)
        feats.append(CategoricalFeature(c, "item", bucket_edges=edges))
    if item_id_buckets > 0:
        feats.append(CategoricalFeature(ITEM_ID_HASH, "item", hash_buckets=int(item_id_buckets)))
    return FeatureSchema(tuple(feats), tuple(group_attributes))


def build_dataset(
    raw: RawTables,
    *,
    name: str,
    split: SplitRule = "attribute",
    seed: int = 0,
    item_id_buckets: int = 0,
    max_users: int | None = None,
    pool_attribute: str | None = None,
    pool_values: Sequence[Any] = (),
    group_attributes: Sequence[str] = (),
    pool_fraction: float = 0.8,
    rest_fraction: float = 0.2,
    time_cut_quantile: float = 0.5,
    min_interactions: int = MIN_INTERACTIONS,
    n_buckets: int = 10,
    min_count: int = 1,
    features: str = "full",
    without: Sequence[str] | str = (),
    stats_from: Literal["open", "all"] = "open",
    item_code_cap: int = 2048,
    item_code_min_count: int = 2,
) -> Dataset:
    """Split, fit and encode one dataset; see the module docstring for why in this order.

    ``features``/``without`` select the issue-14 input kinds (``fedpa.signals.select_kinds``);
    ``stats_from="all"`` counts item statistics over every user (the central ceiling, research
    only); ``item_code_cap``/``item_code_min_count`` bound the frequent-item codes.
    """
    kinds = select_kinds(features, without)
    split = split_rule(split)
    if item_id_buckets < 0:
        raise ConfigError(f"item_id_buckets must be ≥ 0, got {item_id_buckets}")
    group_attributes = tuple(group_attributes)
    for g in group_attributes:
        _require_user_column(raw.users, g, "group_attributes")
    user_features = tuple(dict.fromkeys((*raw.user_features, *group_attributes)))

    inter = raw.interactions
    user_ids = _subsample_users(sorted_ids(inter["user_id"].to_numpy()), max_users, seed)
    if len(user_ids) < len(pd.unique(inter["user_id"])):
        inter = inter.loc[inter["user_id"].isin(user_ids)]
    item_ids = sorted_ids(inter["item_id"].to_numpy())
    u = pd.Index(user_ids).get_indexer(inter["user_id"]).astype(np.int64)
    i = pd.Index(item_ids).get_indexer(inter["item_id"]).astype(np.int64)
    ts = inter["timestamp"].to_numpy(dtype=np.int64)
    y = inter["label"].to_numpy(dtype=np.float32)
    order = np.lexsort((ts, u))  # stable: equal (user, ts) rows keep file order
    u, i, ts, y = u[order], i[order], ts[order], y[order]

    users = raw.users.set_index("user_id").reindex(user_ids)
    items = raw.items.set_index("item_id").reindex(item_ids)
    report: dict[str, Any] = {"dataset": name, "seed": int(seed), "split": split, **raw.report,
                              "interactions": len(u), "users_in_log": len(user_ids),
                              "items_in_log": len(item_ids),
                              "users_without_feature_row": int((~pd.Index(user_ids).isin(raw.users["user_id"])).sum())}
    if max_users is not None:
        report["max_users"] = int(max_users)

    if split == "attribute":
        if not pool_attribute:
            raise ConfigError(f"{name}: split='attribute' needs a pool_attribute option (or split='time')")
        _require_user_column(raw.users, pool_attribute, "pool_attribute")
        is_open_user = assign_open_users(users[pool_attribute].to_numpy(), list(pool_values), seed=seed,
                                         pool_fraction=pool_fraction, rest_fraction=rest_fraction)
        row_open = is_open_user[u]
        report["split_rule"] = (f"attribute: {pool_fraction:.0%} of users with {pool_attribute} in "
                                f"{list(map(str, pool_values))} + {rest_fraction:.0%} of the rest are open")
        report.update(pool_attribute=pool_attribute, pool_values=[str(v) for v in pool_values],
                      users_assigned_open=int(is_open_user.sum()),
                      users_assigned_private=int((~is_open_user).sum()))
    else:
        cut = time_cut(ts, time_cut_quantile)
        row_open = ts < cut
        report["split_rule"] = (f"time: rows before the {time_cut_quantile:.0%} timestamp quantile "
                                f"({cut} ms) are open; later rows are private")
        report["time_cut_ms"] = cut
    report["group_attributes"] = list(group_attributes)

    parts = np.full(len(u), -1, dtype=np.int8)
    for mask, pool in ((row_open, "open"), (~row_open, "private")):
        sub = chronological_parts(u[mask], min_interactions=min_interactions)
        parts[mask] = sub
        dropped = np.unique(u[mask][sub < 0])
        report[f"{pool}_users_dropped_too_few"] = int(dropped.size)
        report[f"{pool}_rows_dropped_with_users"] = int((sub < 0).sum())
    report["min_interactions"] = int(min_interactions)

    train_rows = row_open & (parts == 0)
    schema = _fit_schema(raw, users, items, user_features, group_attributes,
                         np.unique(u[train_rows]), np.unique(i[train_rows]), i[train_rows],
                         item_id_buckets=item_id_buckets, n_buckets=n_buckets, min_count=min_count)
    user_x = schema.encode_users(users.reset_index())
    item_x = schema.encode_items(items.reset_index())
    x = np.concatenate([user_x[u], item_x[i]], axis=1)  # [N, F]: user columns then item columns
    group_cols = [user_features.index(g) for g in group_attributes]
    prior = float(np.clip(y[train_rows].mean(), 0.01, 0.99)) if train_rows.any() else 0.5
    spec = SignalSpec(kinds=kinds, prior_ctr=prior, stats_from=stats_from, item_code_cap=item_code_cap,
                      item_code_min_count=item_code_min_count,
                      history_fields=tuple(schema.names[p] for p in schema.positions("item")
                                           if schema.features[p].kind != "hashed"))  # item ids: see item_code
    extra = signal_columns(spec, schema, u=u, i=i, ts=ts, y=y, x=x, row_groups=user_x[u][:, group_cols],
                           row_open=row_open, parts=parts, n_items=len(item_ids), n_buckets=n_buckets)
    if kinds:
        schema = FeatureSchema(schema.features + extra.features, schema.group_attributes, signals=spec.to_dict())
        x = np.concatenate([x, extra.codes], axis=1)  # [N, F']: + item_table columns, then history columns
    report["input_kinds"] = list(kinds)
    if stats_from != "open":
        report["stats_from"] = stats_from

    def take(mask: np.ndarray) -> Interactions:
        idx = np.flatnonzero(mask)
        return Interactions(user=u[idx], item=i[idx], x=x[idx], y=y[idx], ts=ts[idx])

    splits = {f"{pool}_{part}": take(pool_mask & (parts == k))
              for pool, pool_mask in (("open", row_open), ("private", ~row_open))
              for k, part in enumerate(("train", "val", "test"))}
    open_users = np.unique(u[row_open & (parts >= 0)])
    private_users = np.unique(u[~row_open & (parts >= 0)])
    user_groups = user_x[:, group_cols]
    report.update(open_users=int(open_users.size), private_users=int(private_users.size))
    report["oov_rate_open_test"] = _oov_rates(schema, splits["open_test"])
    report["oov_rate_private_test"] = _oov_rates(schema, splits["private_test"])
    report["private_users_per_group"] = {
        g: {("<oov>" if c == 0 else schema.features[user_features.index(g)].vocabulary[c - 1]): int(n)
            for c, n in zip(*np.unique(user_groups[private_users, k], return_counts=True), strict=True)}
        for k, g in enumerate(group_attributes)
    }
    logger.info("%s: %d open / %d private users, %d rows", name, open_users.size, private_users.size, len(u))
    return Dataset(name=name, schema=schema, user_ids=user_ids, item_ids=item_ids, user_x=user_x,
                   user_groups=user_groups, open_users=open_users, private_users=private_users,
                   report=report, item_codes=extra.item_codes, signal_log=extra.log, **splits)


def _oov_rates(schema: FeatureSchema, part: Interactions) -> dict[str, float]:
    """Fraction of rows whose code is 0 (unseen in open train, or missing), per feature."""
    if len(part) == 0:
        return {f.name: float("nan") for f in schema.features}
    rates = (part.x == 0).mean(axis=0)
    return {f.name: round(float(r), 4) for f, r in zip(schema.features, rates, strict=True)}

"""The issue-14 input columns of a dataset, computed leak-free from the split (``fedpa.signals`` maths).

Called by :func:`fedpa.data.build.build_dataset` once the open/private split and the chronological
parts are known, and after the base encoders are fitted:

* **item statistics** for every row from the *open* log (all rows of open users; every user's rows
  for the research-only ``stats_from="all"`` ceiling), counting only other users' rows strictly
  earlier than the row;
* **item codes** ranked on the open training rows;
* **history** per pool-user from that user's own rows: strictly earlier rows for training rows,
  the rows before the split starts for validation and test rows (:func:`fedpa.signals.visible_prefix`).

Bucket edges are fitted on the open training rows, like every other encoder.

Usage: ``cols = signal_columns(spec, base_schema, u=u, i=i, ts=ts, y=y, ...)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedpa.data.schema import CategoricalFeature, FeatureSchema
from fedpa.signals import (
    SignalSpec,
    StatLog,
    encode_history,
    encode_item_signals,
    fit_history_features,
    fit_item_codes,
    fit_item_table_features,
    history_values_asof,
    item_signal_values,
    item_stats_asof,
    visible_prefix,
)
from fedpa.signals.asof import dense_keys

__all__ = ["SignalColumns", "signal_columns"]


@dataclass(frozen=True)
class SignalColumns:
    """The new columns for every row of the log, their features, and what the item table needs."""

    features: tuple[CategoricalFeature, ...]
    codes: np.ndarray  # int64 [N, len(features)] in feature order
    spec: SignalSpec
    item_codes: np.ndarray  # int64 [n_items] frequent-item code per dense item (0 = OOV)
    log: StatLog  # the rows item statistics are counted from (the open log)


def signal_columns(spec: SignalSpec, base: FeatureSchema, *, u: np.ndarray, i: np.ndarray, ts: np.ndarray,
                   y: np.ndarray, x: np.ndarray, row_groups: np.ndarray, row_open: np.ndarray, parts: np.ndarray,
                   n_items: int, n_buckets: int) -> SignalColumns:
    """Compute the selected kinds for all N rows (sorted by user, then time) of one split dataset.

    ``x`` [N, F] are the base codes, ``row_groups`` [N, K] the row user's group codes, ``parts``
    0/1/2 (train/val/test, −1 dropped) within each pool.
    """
    train = row_open & (parts == 0)
    in_log = row_open if spec.stats_from == "open" else np.ones_like(row_open)
    log = StatLog(user=u[in_log], item=i[in_log], ts=ts[in_log], y=y[in_log].astype(np.float64),
                  groups=row_groups[in_log])
    item_codes = (fit_item_codes(i[train], n_items, min_count=spec.item_code_min_count, cap=spec.item_code_cap)
                  if spec.has("item_code") else np.zeros(n_items, np.int64))
    feats: list[CategoricalFeature] = []
    blocks: list[np.ndarray] = []
    if spec.has("item_stats") or spec.has("item_code"):
        values = (item_signal_values(item_stats_asof(log, u, i, ts, row_groups), spec, base.group_attributes)
                  if spec.has("item_stats") else {})
        tfeats = fit_item_table_features({k: v[train] for k, v in values.items()}, spec, base.group_attributes,
                                         n_item_codes=int(item_codes.max(initial=0)), n_buckets=n_buckets)
        feats += tfeats
        blocks.append(encode_item_signals(tfeats, values, item_codes[i]))
    if spec.has("history") and spec.history_fields:
        pool_user = dense_keys(u, row_open)  # a user's open and private rows are separate histories
        visible = visible_prefix(pool_user, ts, parts)
        field_codes = x[:, [base.names.index(f) for f in spec.history_fields]]
        values = history_values_asof(pool_user, field_codes, y, visible, spec, spec.history_fields)
        hfeats = fit_history_features({k: v[train] for k, v in values.items()}, spec.history_fields,
                                      n_buckets=n_buckets)
        feats += hfeats
        blocks.append(encode_history(hfeats, values))
    codes = np.concatenate(blocks, axis=1) if blocks else np.zeros((len(u), 0), np.int64)
    return SignalColumns(features=tuple(feats), codes=codes, spec=spec, item_codes=item_codes, log=log)

"""The new model inputs of issue 14, torch-free numpy shared by datasets, export and the running system.

* :mod:`fedpa.signals.spec` — which kinds are selected and the smoothing constants;
* :mod:`fedpa.signals.asof` — the one counting primitive ("my key's rows strictly before me");
* :mod:`fedpa.signals.items` — item statistics as of a time, frequent-item codes, the item table;
* :mod:`fedpa.signals.history` — the device's history features (streaming and vectorised).

Every input ends up as integer-code columns of ``x`` declared in the feature schema with their
``source`` (``item_table`` or ``history``), so the model and everything downstream is unchanged.
"""

from fedpa.signals.asof import count_before, dense_keys
from fedpa.signals.history import (
    HistoryState,
    encode_history,
    fit_history_features,
    history_values,
    history_values_asof,
    visible_prefix,
)
from fedpa.signals.items import (
    ITEM_CODE,
    ItemStats,
    ItemTable,
    StatLog,
    build_item_table,
    encode_item_signals,
    fit_item_codes,
    fit_item_table_features,
    item_signal_values,
    item_stats_asof,
)
from fedpa.signals.spec import FEATURE_SETS, SIGNAL_KINDS, SignalSpec, select_kinds, smoothed_ctr

__all__ = [
    "FEATURE_SETS",
    "ITEM_CODE",
    "SIGNAL_KINDS",
    "HistoryState",
    "ItemStats",
    "ItemTable",
    "SignalSpec",
    "StatLog",
    "build_item_table",
    "count_before",
    "dense_keys",
    "encode_history",
    "encode_item_signals",
    "fit_history_features",
    "fit_item_codes",
    "fit_item_table_features",
    "history_values",
    "history_values_asof",
    "item_signal_values",
    "item_stats_asof",
    "select_kinds",
    "smoothed_ctr",
    "visible_prefix",
]

"""``load_dataset``: one entry point for every dataset name, with documented per-dataset defaults.

Defaults live in one table (``DATASET_DEFAULTS``) so the docs, the CLI and the tests agree on them;
every entry can be overridden by a keyword option of the same name.

Usage: ``ds = load_dataset("kuaisar-r", "/data/kuaisar-r", seed=0)``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fedpa.data.build import SplitRule, build_dataset
from fedpa.data.dataset import Dataset
from fedpa.data.formats import RawTables, read_csv_layout, read_kuairand, read_kuaisar
from fedpa.data.synthetic import SYNTHETIC_DEFAULTS, generate_synthetic, synthetic_tables
from fedpa.errors import ConfigError, DataError

__all__ = ["DATASET_DEFAULTS", "DATASET_NAMES", "DATA_DIR_ENV", "check_dataset_options", "load_dataset",
           "resolve_data_dir"]

DATA_DIR_ENV = "FEDPA_DATA_DIR"
DATASET_NAMES: tuple[str, ...] = ("kuaisar-r", "kuairand", "csv", "synthetic")

# Why these: the paper splits KuaiSAR by search activity (levels 3–6 are the active searchers)
# and groups by onehot_feat2 and reco_active_level. KuaiRand's pool is its most active users;
# its groups are activity degree and account age, both coarse (≤ 8 values) and present for all.
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "kuaisar-r": {
        "pool_attribute": "search_active_level",
        "pool_values": ("3", "4", "5", "6"),
        "group_attributes": ("onehot_feat2", "reco_active_level"),
    },
    "kuairand": {
        "pool_attribute": "user_active_degree",
        "pool_values": ("full_active",),
        "group_attributes": ("user_active_degree", "register_days_range"),
    },
    "csv": {"pool_attribute": None, "pool_values": (), "group_attributes": ()},
    "synthetic": dict(SYNTHETIC_DEFAULTS),
}
_SUBDIRS = {"kuaisar-r": ("kuaisar-r",), "kuairand": ("kuairand-pure", "kuairand"), "csv": ()}
_MARKERS = {"kuaisar-r": "df.csv", "kuairand": "user_features_*.csv", "csv": "interactions.csv"}

_SPLIT_OPTIONS = {"pool_attribute", "pool_values", "group_attributes", "pool_fraction", "rest_fraction",
                  "time_cut_quantile", "min_interactions", "n_buckets", "min_count", "stats_from", "item_code_cap",
                  "item_code_min_count"}
# Numeric options and what they accept, so `--option n_users=abc` is refused by name, not deep in pandas.
_NUMERIC_OPTIONS: dict[str, tuple[type, str, float, float]] = {  # name → (type, wording, low, high), inclusive
    "n_users": (int, "an integer ≥ 2", 2, math.inf),
    "n_items": (int, "an integer ≥ 1", 1, math.inf),
    "interactions_per_user": (int, "an integer ≥ 1", 1, math.inf),
    "drift": (float, "a number ≥ 0", 0.0, math.inf),
    "pool_fraction": (float, "a fraction in [0, 1]", 0.0, 1.0),
    "rest_fraction": (float, "a fraction in [0, 1]", 0.0, 1.0),
    "time_cut_quantile": (float, "a fraction in [0, 1]", 0.0, 1.0),
    "min_interactions": (int, "an integer ≥ 1", 1, math.inf),
    "n_buckets": (int, "an integer ≥ 1", 1, math.inf),
    "min_count": (int, "an integer ≥ 1", 1, math.inf),
    "item_code_cap": (int, "an integer ≥ 0", 0, math.inf),
    "item_code_min_count": (int, "an integer ≥ 1", 1, math.inf),
}
_READER_OPTIONS = {
    "kuaisar-r": {"user_features", "item_features"},
    "kuairand": {"label", "log_glob", "user_features_file", "video_features_file", "user_features",
                 "item_features"},
    "csv": {"user_features", "item_features"},
    "synthetic": {"n_users", "n_items", "interactions_per_user", "drift"},
}


def resolve_data_dir(name: str, data_dir: str | Path | None) -> Path:
    """The folder holding ``name``'s files: ``data_dir`` itself, or its dataset sub-folder.

    Without ``data_dir`` the ``FEDPA_DATA_DIR`` environment variable is used, so a shared copy
    (e.g. ``../shared/data``) serves every dataset without per-command flags.
    """
    if data_dir is None:
        env = os.environ.get(DATA_DIR_ENV)
        if not env:
            raise DataError(f"{name}: no data_dir given and ${DATA_DIR_ENV} is not set")
        data_dir = env
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: data directory not found")
    marker = _MARKERS[name]
    if any(root.glob(marker)):
        return root
    for sub in _SUBDIRS[name]:
        if any((root / sub).glob(marker)):
            return root / sub
    return root  # the reader reports the precise missing file


def _as_tuple(value: Any) -> tuple[Any, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)  # one value: never split on commas (KuaiRand values contain them)
    return tuple(value)


def check_dataset_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` for dataset ``name`` with numbers as their type; ConfigError naming a bad one.

    Called by :func:`load_dataset`, and by commands before they create any output, so that
    ``--option n_users=abc`` is refused by name rather than deep inside pandas.
    """
    if name not in DATASET_NAMES:
        raise ConfigError(f"unknown dataset {name!r}; expected one of {DATASET_NAMES}")
    allowed = _SPLIT_OPTIONS | _READER_OPTIONS[name]
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ConfigError(f"{name}: unknown option {unknown[0]!r} (allowed: {sorted(allowed)})")
    checked = dict(options)
    for key, value in options.items():
        if key in _NUMERIC_OPTIONS:
            kind, wording, low, high = _NUMERIC_OPTIONS[key]
            ok = isinstance(value, int | float) and not isinstance(value, bool) and (kind is float or
                                                                                   float(value).is_integer())
            if not ok or not low <= value <= high:
                raise ConfigError(f"{name}: option {key} must be {wording}, got {value!r}")
            checked[key] = kind(value)
    return checked


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    *,
    split: SplitRule = "attribute",
    seed: int = 0,
    item_id_buckets: int = 0,
    max_users: int | None = None,
    features: str = "full",
    without: Sequence[str] | str = (),
    **options: Any,
) -> Dataset:
    """Read, split and encode a dataset by name (``kuaisar-r``, ``kuairand``, ``csv``, ``synthetic``).

    Options: ``pool_attribute``, ``pool_values``, ``group_attributes`` override the dataset defaults;
    ``pool_fraction`` (0.8), ``rest_fraction`` (0.2), ``time_cut_quantile`` (0.5),
    ``min_interactions`` (3), ``n_buckets`` (10), ``min_count`` (1) tune the pipeline; reader
    options are listed in docs/data-format.md. Unknown options are refused, not ignored.
    ``features="full"`` (default) adds every issue-14 input kind, ``"base"`` none; ``without``
    drops kinds one at a time (``"history"``, ``"item_stats,item_code"``); options
    ``stats_from`` (``open``; ``all`` = central ceiling), ``item_code_cap`` (2048) and
    ``item_code_min_count`` (2) tune them.
    """
    options = check_dataset_options(name, options)
    reader_opts = {k: v for k, v in options.items() if k in _READER_OPTIONS[name]}
    split_opts = {k: v for k, v in options.items() if k in _SPLIT_OPTIONS}

    defaults = dict(DATASET_DEFAULTS[name])
    raw: RawTables
    if name == "synthetic":
        raw = synthetic_tables(*generate_synthetic(seed=seed, **reader_opts))
    elif name == "csv":
        raw = read_csv_layout(resolve_data_dir(name, data_dir), **reader_opts)
    else:
        # The pool and group columns must be read even when they are not model features.
        extra = (split_opts.get("pool_attribute") or defaults["pool_attribute"],
                 *_as_tuple(split_opts.get("group_attributes", defaults["group_attributes"])))
        reader = read_kuaisar if name == "kuaisar-r" else read_kuairand
        raw = reader(resolve_data_dir(name, data_dir), extra_user_columns=tuple(e for e in extra if e),
                     **reader_opts)
    defaults.update(raw.defaults)  # dataset.json of a generic dataset
    defaults.update(split_opts)
    defaults["pool_values"] = _as_tuple(defaults.get("pool_values"))
    defaults["group_attributes"] = _as_tuple(defaults.get("group_attributes"))
    return build_dataset(raw, name=name, split=split, seed=seed, item_id_buckets=item_id_buckets,
                         max_users=max_users, features=features, without=without, **defaults)

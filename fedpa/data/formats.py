"""Readers for the three on-disk formats, each producing the same :class:`RawTables`.

Keeping "parse a vendor format" apart from "split, fit encoders, encode" means a new dataset only
needs a reader here; the rest of the pipeline (``build.py``) is shared and tested once.

* KuaiSAR-R (``df.csv``, ``user_features.csv``, ``video_features.csv``, optional ``*_feature_dict.txt``)
* KuaiRand (``log_*.csv`` comma-separated or ``log_*.tsv`` tab-separated logs,
  ``user_features_*.csv``, ``video_features_basic_*.csv``)
* the generic layout of docs/data-format.md (``interactions.csv``, ``users.csv``, ``items.csv``,
  optional ``dataset.json``)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fedpa.data.tables import (
    check_unique_ids,
    parse_binary_label,
    parse_ids,
    parse_timestamp_ms,
    read_columns,
    read_table,
)
from fedpa.errors import DataError

__all__ = [
    "KUAIRAND_ITEM_FEATURES",
    "KUAIRAND_USER_FEATURES",
    "NUMERIC_PREFIX",
    "RawTables",
    "read_csv_layout",
    "read_kuairand",
    "read_kuaisar",
    "write_generic_csv",
]

logger = logging.getLogger(__name__)

NUMERIC_PREFIX = "num_"  # items.csv columns with this prefix are numeric statistics (bucketised)

# KuaiRand user columns used as categorical features. The raw counts (follow_user_num, ...,
# register_days) are left out because the official *_range columns already bucket them.
KUAIRAND_USER_FEATURES: tuple[str, ...] = (
    "user_active_degree",
    "is_lowactive_period",
    "is_live_streamer",
    "is_video_author",
    "follow_user_num_range",
    "fans_user_num_range",
    "friend_user_num_range",
    "register_days_range",
    *(f"onehot_feat{i}" for i in range(18)),
)
# Categorical columns of video_features_basic; author_id/music_id are near-unique ids (use the
# item-id hash instead) and upload_dt is a date, so they are not features.
KUAIRAND_ITEM_FEATURES: tuple[str, ...] = ("video_type", "upload_type", "music_type", "tag")


@dataclass
class RawTables:
    """A dataset as parsed tables, before any split or encoding.

    ``interactions`` has columns user_id (str), item_id (str), timestamp (int64 ms), label (float32);
    ``users`` has user_id plus every user column named in ``user_features`` (and the pool attribute);
    ``items`` has item_id plus ``item_features`` and ``numeric_item_features``.
    """

    interactions: pd.DataFrame
    users: pd.DataFrame
    items: pd.DataFrame
    user_features: tuple[str, ...]
    item_features: tuple[str, ...]
    numeric_item_features: tuple[str, ...] = ()
    defaults: dict[str, Any] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)


def _interaction_frame(
    df: pd.DataFrame, path: Path, *, user: str, item: str, ts: str, label: str
) -> tuple[pd.DataFrame, int]:
    """Validate and project a raw log to the four standard columns, dropping exact duplicate rows.

    Exact duplicates (every raw column equal) are logging artefacts, not repeated views; they are
    removed before projection so that distinct rows differing only in unused columns survive.
    """
    user_ids = parse_ids(df, user, path)
    item_ids = parse_ids(df, item, path)
    labels = parse_binary_label(df, label, path)
    stamps = parse_timestamp_ms(df, ts, path)
    dup = df.duplicated().to_numpy()
    out = pd.DataFrame({"user_id": user_ids, "item_id": item_ids, "timestamp": stamps, "label": labels})
    return out.loc[~dup].reset_index(drop=True), int(dup.sum())


def _feature_table(
    path: Path, id_column: str, columns: Sequence[str], *, sep: str = ",", rename_id: str
) -> pd.DataFrame:
    """A users/items table restricted to ``columns``, ids as strings and unique."""
    df = read_table(path, required=(id_column, *columns), sep=sep, id_columns=(id_column,), usecols=columns)
    ids = parse_ids(df, id_column, path)
    check_unique_ids(ids, id_column, path)
    out = df[list(columns)].copy()
    out.insert(0, rename_id, ids)
    return out


def _read_feature_dict(path: Path) -> tuple[str, ...] | None:
    """The feature names a ``*_feature_dict.txt`` lists (one per line), if the file exists."""
    if not path.is_file():
        return None
    names = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    return names or None


def _one_file(directory: Path, pattern: str, what: str) -> Path:
    matches = sorted(directory.glob(pattern))
    if not matches:
        raise DataError(f"{directory}: no {what} file matching {pattern!r}")
    if len(matches) > 1:
        names = [m.name for m in matches]
        raise DataError(f"{directory}: several {what} files match {pattern!r}: {names}; pass the file name option")
    return matches[0]


def read_kuaisar(
    data_dir: Path,
    *,
    user_features: Sequence[str] | None = None,
    item_features: Sequence[str] | None = None,
    extra_user_columns: Sequence[str] = (),
) -> RawTables:
    """KuaiSAR-R as published by the FedPA/MRFF authors.

    Feature columns default to those in ``KuaiSAR-R_{user,video}_feature_dict.txt`` (the authors'
    choice) or, without them, to every column of the feature files.
    """
    log_path = data_dir / "df.csv"
    log = read_table(log_path, required=("user_id", "video_id", "timestamp", "is_click"),
                     id_columns=("user_id", "video_id"))
    inter, dups = _interaction_frame(log, log_path, user="user_id", item="video_id", ts="timestamp",
                                     label="is_click")
    user_path, item_path = data_dir / "user_features.csv", data_dir / "video_features.csv"
    if user_features is None:
        user_features = _read_feature_dict(data_dir / "KuaiSAR-R_user_feature_dict.txt")
    if item_features is None:
        item_features = _read_feature_dict(data_dir / "KuaiSAR-R_video_feature_dict.txt")
    ucols = _all_columns(user_path, "user_id") if user_features is None else tuple(user_features)
    icols = _all_columns(item_path, "video_id") if item_features is None else tuple(item_features)
    users = _feature_table(user_path, "user_id", _unique((*ucols, *extra_user_columns)), rename_id="user_id")
    items = _feature_table(item_path, "video_id", icols, rename_id="item_id")
    return RawTables(inter, users, items, tuple(ucols), tuple(icols),
                     report={"duplicate_rows_dropped": dups, "label_column": "is_click"})


def read_kuairand(
    data_dir: Path,
    *,
    label: str = "is_click",
    log_glob: str | None = None,
    user_features_file: str | None = None,
    video_features_file: str | None = None,
    user_features: Sequence[str] | None = None,
    item_features: Sequence[str] | None = None,
    extra_user_columns: Sequence[str] = (),
) -> RawTables:
    """KuaiRand logs (official ``log_*.csv`` or the tab-separated ``log_*.tsv`` subset).

    ``label`` picks the log column used as the click label (``is_click`` by default; the
    likehate subset's explicit feedback is ``label``). Videos without a feature row keep OOV codes
    for their categorical features; their duration still comes from the log's ``duration_ms``.
    """
    patterns = [log_glob] if log_glob else ["log_*.csv", "log_*.tsv"]
    log_paths = sorted({p for pat in patterns for p in data_dir.glob(pat)})
    if not log_paths:
        raise DataError(f"{data_dir}: no KuaiRand log file matching {patterns}")
    frames, dups, durations = [], 0, []
    for path in log_paths:
        sep = "\t" if path.suffix == ".tsv" else ","
        log = read_table(path, required=("user_id", "video_id", "time_ms", label), sep=sep,
                         id_columns=("user_id", "video_id"))
        inter, d = _interaction_frame(log, path, user="user_id", item="video_id", ts="time_ms", label=label)
        frames.append(inter)
        dups += d
        if "duration_ms" in log.columns:
            dur = pd.DataFrame({"item_id": parse_ids(log, "video_id", path),
                                "duration_ms": pd.to_numeric(log["duration_ms"], errors="coerce")})
            durations.append(dur)
    inter = pd.concat(frames, ignore_index=True)
    user_path = data_dir / user_features_file if user_features_file else _one_file(
        data_dir, "user_features_*.csv", "user feature")
    item_path = data_dir / video_features_file if video_features_file else _one_file(
        data_dir, "video_features_basic_*.csv", "video feature")
    ucols = tuple(user_features) if user_features is not None else KUAIRAND_USER_FEATURES
    icols = tuple(item_features) if item_features is not None else KUAIRAND_ITEM_FEATURES
    users = _feature_table(user_path, "user_id", _unique((*ucols, *extra_user_columns)), rename_id="user_id")
    items = _feature_table(item_path, "video_id", (*icols, "video_duration"), rename_id="item_id")
    logged = pd.Series(inter["item_id"].unique())
    without_row = int((~logged.isin(items["item_id"])).sum())
    # Duration: the log's duration_ms (present for every logged video) wins over the feature file.
    log_dur = (pd.concat(durations).groupby("item_id")["duration_ms"].max() if durations
               else pd.Series(dtype=np.float64))
    items = items.merge(log_dur.rename("log_duration"), left_on="item_id", right_index=True, how="outer")
    items["duration_ms"] = items.pop("log_duration").fillna(items.pop("video_duration"))
    report = {"duplicate_rows_dropped": dups, "label_column": label,
              "log_files": [p.name for p in log_paths],
              "items_without_feature_row": without_row}
    return RawTables(inter, users, items, ucols, icols, ("duration_ms",), report=report)


def read_csv_layout(
    data_dir: Path,
    *,
    user_features: Sequence[str] | None = None,
    item_features: Sequence[str] | None = None,
) -> RawTables:
    """The generic three-table layout (docs/data-format.md), plus optional ``dataset.json`` defaults."""
    path = data_dir / "interactions.csv"
    log = read_table(path, required=("user_id", "item_id", "timestamp", "label"),
                     id_columns=("user_id", "item_id"))
    inter, dups = _interaction_frame(log, path, user="user_id", item="item_id", ts="timestamp", label="label")
    user_path, item_path = data_dir / "users.csv", data_dir / "items.csv"
    ucols = _all_columns(user_path, "user_id") if user_features is None else tuple(user_features)
    all_icols = _all_columns(item_path, "item_id")
    icols = tuple(c for c in all_icols if not c.startswith(NUMERIC_PREFIX)) if item_features is None \
        else tuple(c for c in item_features if not c.startswith(NUMERIC_PREFIX))
    ncols = tuple(c for c in (all_icols if item_features is None else item_features)
                  if c.startswith(NUMERIC_PREFIX))
    unknown = [c for c in ucols if c not in _all_columns(user_path, "user_id")]
    if unknown:
        raise DataError(f"{user_path.name}: missing required column {unknown[0]!r} (option user_features)")
    users = _feature_table(user_path, "user_id", _all_columns(user_path, "user_id"), rename_id="user_id")
    items = _feature_table(item_path, "item_id", (*icols, *ncols), rename_id="item_id")
    for c in ncols:
        values = pd.to_numeric(items[c], errors="coerce")
        bad = values.isna() & items[c].notna()
        if bool(bad.any()):
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(f"{item_path.name}: column {c!r}, row {row + 1} (line {row + 2}): "
                            f"expected a number (numeric '{NUMERIC_PREFIX}' column), got {items[c].iloc[row]!r}")
        items[c] = values
    defaults = _read_dataset_json(data_dir / "dataset.json")
    return RawTables(inter, users, items, ucols, icols, ncols, defaults=defaults,
                     report={"duplicate_rows_dropped": dups, "label_column": "label"})


def _read_dataset_json(path: Path) -> dict[str, Any]:
    """Optional split defaults for a generic dataset (pool_attribute, pool_values, group_attributes)."""
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: invalid JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise DataError(f"{path}: expected a JSON object, got {type(meta).__name__}")
    known = {"name", "pool_attribute", "pool_values", "group_attributes", "description"}
    unknown = sorted(set(meta) - known)
    if unknown:
        raise DataError(f"{path}: unknown key {unknown[0]!r} (known: {sorted(known)})")
    return {k: v for k, v in meta.items() if k in {"pool_attribute", "pool_values", "group_attributes"}}


def _all_columns(path: Path, id_column: str) -> tuple[str, ...]:
    """Every column of a feature file except its id (the file must exist and have the id)."""
    columns = read_columns(path)
    if id_column not in columns:
        raise DataError(f"{path.name}: missing required column {id_column!r} (found columns: {list(columns)})")
    return tuple(c for c in columns if c != id_column)


def _unique(names: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(names))


def write_generic_csv(
    out_dir: str | Path,
    interactions: pd.DataFrame,
    users: pd.DataFrame,
    items: pd.DataFrame,
    *,
    meta: dict[str, Any] | None = None,
) -> None:
    """Write the documented three-table layout (and ``dataset.json`` when ``meta`` is given).

    The inverse of ``read_csv_layout``: any dataset converted into these frames loads with
    ``load_dataset("csv", out_dir)``. Required columns are checked before anything is written.
    """
    out = Path(out_dir)
    for frame, fname, required in ((interactions, "interactions.csv", ("user_id", "item_id", "timestamp", "label")),
                                   (users, "users.csv", ("user_id",)), (items, "items.csv", ("item_id",))):
        missing = [c for c in required if c not in frame.columns]
        if missing:
            raise DataError(f"{fname}: missing required column {missing[0]!r} (found columns: {list(frame.columns)})")
    out.mkdir(parents=True, exist_ok=True)
    interactions[["user_id", "item_id", "timestamp", "label",
                  *[c for c in interactions.columns if c not in ("user_id", "item_id", "timestamp", "label")]]
                 ].to_csv(out / "interactions.csv", index=False)
    users.to_csv(out / "users.csv", index=False)
    items.to_csv(out / "items.csv", index=False)
    if meta is not None:
        clean = {k: (list(v) if isinstance(v, tuple) else v) for k, v in meta.items()}
        (out / "dataset.json").write_text(json.dumps(clean, indent=2) + "\n")

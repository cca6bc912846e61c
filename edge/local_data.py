"""A device's own data files: raw interactions and candidate items, encoded with the bundle's schema.

A phone holds raw values (the user's profile, the items it saw), not model codes; the bundle's
feature schema (vocabularies, bucket edges, hashes) turns them into codes exactly as the server
encoded its training data, so the device and the platform agree without sharing raw logs.

Interaction file (CSV): one row per impression, a column per feature of the schema named as in
the manifest (user and item features; a missing feature column encodes as OOV 0), a ``label``
column (0/1) and optionally ``timestamp``. Candidate file: item feature columns, optionally an
``item_id`` (reported back by ``recommend``). ``.npz`` files with encoded ``x`` (and ``y``,
``ts``) are accepted as they are.

Usage: ``x, y, ts = read_interactions("me.csv", schema)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fedpa.data.schema import FeatureSchema
from fedpa.errors import DataError

__all__ = ["encode_rows", "groups_of", "read_candidates", "read_interaction_log", "read_interactions", "schema_of"]


def schema_of(manifest: Any) -> FeatureSchema:
    """The bundle's feature schema."""
    return FeatureSchema.from_dict(manifest.feature_schema)


def encode_rows(table: pd.DataFrame, schema: FeatureSchema, *, sides: tuple[str, ...] = ("user", "item")
                ) -> np.ndarray:
    """Raw feature columns → int64 codes ``[N, F]`` in schema order; absent columns stay 0 (OOV).

    Only feature-table columns (source ``user``/``item``) are read from the file: signal columns
    are filled by ``edge.signals.DeviceSignals`` through ``FeatureEncoder.fill``.
    """
    x = np.zeros((len(table), len(schema.features)), np.int64)
    for j, feature in enumerate(schema.features):
        if feature.side not in sides or getattr(feature, "source", feature.side) not in ("user", "item"):
            continue
        column = feature.name if feature.name in table.columns else None
        if column is None and feature.kind == "hashed" and "item_id" in table.columns:
            column = "item_id"
        if column is not None:
            x[:, j] = feature.encode(table[column])
    return x


def read_interactions(path: str | Path, schema: FeatureSchema) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Encoded ``x [N, F]``, labels ``y [N]`` and timestamps of a device's interaction file."""
    x, y, ts, _ = read_interaction_log(path, schema)
    return x, y, ts


def read_interaction_log(path: str | Path, schema: FeatureSchema
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Like :func:`read_interactions`, plus each row's ``item_id`` (None when the file has none).

    The signal columns (``item_table``, ``history``) stay 0 here: ``edge.signals.DeviceSignals``
    fills them (item rows need the ids, history the time order).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: interaction file not found")
    ids: np.ndarray | None = None
    if path.suffix == ".npz":
        data = np.load(path)
        x, y = np.asarray(data["x"], np.int64), np.asarray(data["y"], np.float32)
        ts = np.asarray(data["ts"], np.int64) if "ts" in data else np.arange(len(y), dtype=np.int64)
        ids = np.asarray(data["item_id"]).astype(str).astype(object) if "item_id" in data else None
    else:
        table = pd.read_csv(path)
        if "label" not in table.columns:
            raise DataError(f"{path}: needs a 'label' column (0/1), found {list(table.columns)}")
        missing = [f.name for f in schema.features if f.name not in table.columns and f.kind != "hashed"]
        if len(missing) == len(schema.features):
            raise DataError(f"{path}: no column matches a feature of the schema {list(schema.names)}")
        x = encode_rows(table, schema)
        y = pd.to_numeric(table["label"], errors="coerce").to_numpy(np.float32)
        if not np.isin(y, (0.0, 1.0)).all():
            raise DataError(f"{path}: column 'label' must hold 0/1 values")
        ts = (pd.to_numeric(table["timestamp"], errors="coerce").fillna(0).to_numpy(np.int64)
              if "timestamp" in table.columns else np.arange(len(y), dtype=np.int64))
        ids = table["item_id"].to_numpy(dtype=object) if "item_id" in table.columns else None
    if x.ndim != 2 or x.shape[1] != len(schema.features):
        raise DataError(f"{path}: expected {len(schema.features)} feature columns, got x of shape {x.shape}")
    order = np.argsort(ts, kind="stable")  # a log is chronological; train/val cuts rely on it
    return x[order], y[order], ts[order], None if ids is None else ids[order]


def groups_of(x: np.ndarray, schema: FeatureSchema) -> dict[str, int]:
    """The device's group values: its user-feature codes in the grouping columns (first row)."""
    if len(x) == 0:
        raise DataError("cannot tell the device's groups from an empty interaction log")
    return {a: int(x[0, p]) for a, p in zip(schema.group_attributes, schema.group_positions, strict=True)}


def read_candidates(path: str | Path, schema: FeatureSchema, user_codes: np.ndarray
                    ) -> tuple[np.ndarray, list[str]]:
    """Candidate rows: the device's user-feature codes + each item's encoded features; and item ids."""
    path = Path(path)
    if path.suffix == ".npz":
        x = np.asarray(np.load(path)["x"], np.int64)
        ids = [str(i) for i in range(len(x))]
    else:
        table = pd.read_csv(path)
        x = encode_rows(table, schema, sides=("item",))
        ids = [str(v) for v in table["item_id"]] if "item_id" in table.columns else [str(i) for i in range(len(x))]
    users = list(schema.user_feature_positions)
    x[:, users] = np.asarray(user_codes, np.int64)[users]
    return x, ids

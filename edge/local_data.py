"""A device's own data files: raw interactions and candidate items, encoded with the bundle's schema.

A phone holds raw values (the user's profile, the items it saw), not model codes; the bundle's
feature schema (vocabularies, bucket edges, hashes) turns them into codes exactly as the server
encoded its training data, so the device and the platform agree without sharing raw logs.

Interaction file (CSV): one row per impression, a column per user and item feature of the schema
named as in the manifest, a ``label`` column (0/1) and optionally ``timestamp`` and ``item_id``.
Candidate file: item feature columns, optionally an ``item_id`` (reported back by ``recommend``).
Both are encoded by the bundle's one encoder, ``FeatureEncoder.encode_table``: a missing feature
column (unless the schema declares its default: a hashed id feature reads ``item_id``) or an
unknown column is a DataError naming it. ``.npz`` files with encoded ``x`` (and ``y``, ``ts``) are
accepted as they are.

Usage: ``x, y, ts = read_interactions("me.csv", schema)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fedpa.data.schema import FeatureSchema
from fedpa.errors import DataError
from fedpa.manifest import Manifest
from fedpa.runtime.features import FeatureEncoder

__all__ = ["groups_of", "read_candidates", "read_interaction_log", "read_interactions", "schema_of"]


def schema_of(manifest: Manifest) -> FeatureSchema:
    """The bundle's feature schema."""
    return FeatureSchema.from_dict(manifest.feature_schema)


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
        x = FeatureEncoder(schema).encode_table(table, where=str(path))
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
        x = FeatureEncoder(schema).encode_table(table, sources=("item",), where=str(path))
        ids = [str(v) for v in table["item_id"]] if "item_id" in table.columns else [str(i) for i in range(len(x))]
    users = list(schema.user_feature_positions)
    x[:, users] = np.asarray(user_codes, np.int64)[users]
    return x, ids

"""On-device history inputs (``source="history"``): the user's own earlier rows, per item-field value.

For each history field (an item feature such as a category or the duration bucket) and a
candidate's value ``v`` of it, two numbers from the user's earlier rows only:

* ``hist_count@field`` — how many of them had value ``v``;
* ``hist_ctr_delta@field`` — the user's smoothed click-rate on ``v`` minus the user's overall
  smoothed click-rate (how much more or less than usual this user clicks this kind of item).

Values are the schema's *codes* of the field (the device has them from its feature encoder), so
the state belongs to one schema: after a schema change, rebuild it from the device's local log.

Two implementations of the same numbers: :class:`HistoryState`, the streaming one a device keeps
(``observe`` after each interaction, ``codes`` for candidates), and :func:`history_values_asof`,
the vectorised one the dataset pipeline runs over a whole split. Which earlier rows a scored row
sees is :func:`visible_prefix`'s rule: a training row sees the user's rows strictly earlier in
time; a validation or test row sees only the rows before its split starts (scoring test rows
with features from earlier *test* labels biases GAUC, issue 14).

Usage: ``state = HistoryState.for_schema(schema); state.observe(x, y); x[:, cols] = state.codes(x)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fedpa.data.schema import CategoricalFeature, FeatureSchema, fit_bucket_edges
from fedpa.errors import DataError
from fedpa.signals.asof import count_before, dense_keys
from fedpa.signals.spec import SignalSpec, smoothed_ctr

__all__ = [
    "HistoryState",
    "encode_history",
    "fit_history_features",
    "history_values",
    "history_values_asof",
    "visible_prefix",
]


def history_values(count: np.ndarray, clicks: np.ndarray, total: np.ndarray, total_clicks: np.ndarray,
                   spec: SignalSpec, fields: Sequence[str]) -> dict[str, np.ndarray]:
    """Raw counts → raw feature values by name (``hist_count@f``, ``hist_ctr_delta@f``).

    ``count``/``clicks`` are [N, J] per field; ``total``/``total_clicks`` [N] over all the user's
    visible rows. With no row on the value the delta is exactly 0.
    """
    user_ctr = smoothed_ctr(total_clicks, total, spec.prior_ctr, spec.user_smoothing)  # [N]
    value_ctr = smoothed_ctr(clicks, count, user_ctr[:, None], spec.history_smoothing)  # [N, J]
    out: dict[str, np.ndarray] = {}
    for j, f in enumerate(fields):
        out[f"hist_count@{f}"] = count[:, j].astype(np.float64)
        out[f"hist_ctr_delta@{f}"] = value_ctr[:, j] - user_ctr
    return out


def fit_history_features(values: Mapping[str, np.ndarray], fields: Sequence[str], *,
                         n_buckets: int = 10) -> tuple[CategoricalFeature, ...]:
    """The ``history`` columns (count then delta per field), edges fitted on open training rows."""
    feats: list[CategoricalFeature] = []
    for f in fields:
        name = f"hist_count@{f}"
        feats.append(CategoricalFeature(name, "item", source="history", signal="count", of=f,
                                        bucket_edges=fit_bucket_edges(values[name], n_buckets=n_buckets)))
        name = f"hist_ctr_delta@{f}"
        edges = fit_bucket_edges(values[name], n_buckets=n_buckets, transform="identity")
        feats.append(CategoricalFeature(name, "item", source="history", signal="ctr_delta", of=f,
                                        bucket_edges=edges, bucket_transform="identity"))
    return tuple(feats)


def encode_history(features: Sequence[CategoricalFeature], values: Mapping[str, np.ndarray]) -> np.ndarray:
    """[N, len(features)] codes with each feature's own edges."""
    n = len(next(iter(values.values()))) if values else 0
    out = np.zeros((n, len(features)), np.int64)
    for j, f in enumerate(features):
        out[:, j] = f.encode(values[f.name])
    return out


def visible_prefix(user: np.ndarray, ts: np.ndarray, part: np.ndarray) -> np.ndarray:
    """Per row: how many of the user's first rows its history may use (rows sorted by user, then time).

    Part 0 (train) rows see the user's rows with a strictly earlier timestamp; rows of a later part
    (validation 1, test 2) see all the user's rows of earlier parts and none of their own part.
    """
    user, ts, part = (np.asarray(a, np.int64).ravel() for a in (user, ts, part))
    n = user.size
    if n == 0:
        return np.zeros(0, np.int64)
    starts = np.flatnonzero(np.r_[True, user[1:] != user[:-1]])
    lengths = np.diff(np.r_[starts, n])
    first = np.repeat(starts, lengths)  # each row's user's first row
    row = np.arange(n)
    # first row of each (user, ts) run: rows are in time order within the user
    new_ts = np.r_[True, (user[1:] != user[:-1]) | (ts[1:] != ts[:-1])]
    ts_start = np.maximum.accumulate(np.where(new_ts, row, 0))
    new_part = np.r_[True, (user[1:] != user[:-1]) | (part[1:] != part[:-1])]
    part_start = np.maximum.accumulate(np.where(new_part, row, 0))
    return np.where(part == 0, ts_start, part_start) - first


def history_values_asof(user: np.ndarray, field_codes: np.ndarray, y: np.ndarray, visible: np.ndarray,
                        spec: SignalSpec, fields: Sequence[str]) -> dict[str, np.ndarray]:
    """Vectorised history values: row ``r`` uses the first ``visible[r]`` rows of its user.

    ``field_codes`` [N, J] are the rows' codes of the history fields; rows sorted by (user, time).
    """
    user = np.asarray(user, np.int64).ravel()
    n = user.size
    field_codes = np.asarray(field_codes, np.int64).reshape(n, -1)
    y = np.asarray(y, np.float64).ravel()
    starts = np.flatnonzero(np.r_[True, user[1:] != user[:-1]]) if n else np.zeros(0, np.int64)
    first = np.repeat(starts, np.diff(np.r_[starts, n])) if n else np.zeros(0, np.int64)
    limit = first + np.asarray(visible, np.int64)  # rows [first, limit) are visible
    row = np.arange(n)
    cum = np.r_[0.0, np.cumsum(y)]
    total = limit - first
    total_clicks = cum[limit] - cum[first]
    count = np.zeros((n, len(fields)), np.int64)
    clicks = np.zeros((n, len(fields)), np.float64)
    for j in range(len(fields)):
        key = dense_keys(user, field_codes[:, j])
        count[:, j], clicks[:, j] = count_before(key, row, y, key, limit)
    return history_values(count, clicks, total, total_clicks, spec, fields)


class HistoryState:
    """One device's history: per field, per value code, ``[impressions, clicks]``; never uploaded.

    ``observe`` adds interactions (call it after each one is labelled); ``codes`` gives the
    history columns for candidates from everything observed so far. JSON round trip
    (``to_dict``/``from_dict``) for the device's local store.
    """

    def __init__(self, features: Sequence[CategoricalFeature], field_positions: Sequence[int],
                 spec: SignalSpec) -> None:
        self.features = tuple(features)
        self.fields = tuple(dict.fromkeys(f.of for f in self.features))
        if len(field_positions) != len(self.fields):
            raise DataError(f"HistoryState: {len(self.fields)} history fields but {len(field_positions)} positions")
        self.field_positions = tuple(int(p) for p in field_positions)
        self.spec = spec
        self.total = 0
        self.total_clicks = 0.0
        self.counts: list[dict[int, list[float]]] = [{} for _ in self.fields]

    @classmethod
    def for_schema(cls, schema: FeatureSchema) -> HistoryState:
        """The empty state for a schema's ``history`` columns (reads the field columns of full rows ``x``)."""
        feats = [f for f in schema.features if f.source == "history"]
        fields = list(dict.fromkeys(f.of for f in feats))
        missing = [f for f in fields if f not in schema.names]
        if missing:
            raise DataError(f"history field {missing[0]!r} is not a feature of the schema")
        return cls(feats, [schema.names.index(f) for f in fields], SignalSpec.from_dict(schema.signals))

    def _field_codes(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.int64)
        x = x.reshape(1, -1) if x.ndim == 1 else x
        return x[:, list(self.field_positions)]

    def observe(self, x: np.ndarray, y: np.ndarray | Sequence[float]) -> None:
        """Add labelled rows (full-width codes ``x`` [L, F], labels ``y`` [L]) to the history."""
        codes = self._field_codes(x)
        y = np.asarray(y, np.float64).ravel()
        if codes.shape[0] != y.size:
            raise DataError(f"HistoryState.observe: {codes.shape[0]} rows but {y.size} labels")
        for r in range(y.size):
            for j, table in enumerate(self.counts):
                cell = table.setdefault(int(codes[r, j]), [0.0, 0.0])
                cell[0] += 1.0
                cell[1] += float(y[r])
        self.total += int(y.size)
        self.total_clicks += float(y.sum())

    def values(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Raw history values for candidate rows ``x`` [L, F] (nothing is observed)."""
        codes = self._field_codes(x)
        count = np.zeros(codes.shape, np.int64)
        clicks = np.zeros(codes.shape, np.float64)
        for j, table in enumerate(self.counts):
            for r in range(codes.shape[0]):
                cell = table.get(int(codes[r, j]))
                if cell is not None:
                    count[r, j], clicks[r, j] = int(cell[0]), cell[1]
        n = codes.shape[0]
        return history_values(count, clicks, np.full(n, self.total), np.full(n, self.total_clicks),
                              self.spec, self.fields)

    def codes(self, x: np.ndarray) -> np.ndarray:
        """[L, n_history_columns] codes for candidate rows ``x``, in schema order."""
        return encode_history(self.features, self.values(x))

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe state for the device's store (value codes as string keys)."""
        return {"fields": list(self.fields), "total": self.total, "total_clicks": self.total_clicks,
                "counts": [{str(k): v for k, v in t.items()} for t in self.counts]}

    def load_dict(self, d: Mapping[str, Any]) -> None:
        """Restore a state written by :meth:`to_dict`; refuses one kept for other fields."""
        if list(d.get("fields", [])) != list(self.fields):
            raise DataError(f"stored history is for fields {d.get('fields')}, the schema has {list(self.fields)}; "
                            "rebuild it from the local log")
        self.total = int(d["total"])
        self.total_clicks = float(d["total_clicks"])
        self.counts = [{int(k): [float(v[0]), float(v[1])] for k, v in t.items()} for t in d["counts"]]

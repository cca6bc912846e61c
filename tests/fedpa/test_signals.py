"""fedpa.signals: the as-of rule by brute force, streaming = vectorised, item table = as-of at "now"."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fedpa.data import CategoricalFeature, FeatureSchema
from fedpa.errors import ConfigError, DataError
from fedpa.signals import (
    HistoryState,
    SignalSpec,
    StatLog,
    build_item_table,
    count_before,
    dense_keys,
    encode_item_signals,
    fit_history_features,
    fit_item_codes,
    fit_item_table_features,
    history_values_asof,
    item_signal_values,
    item_stats_asof,
    select_kinds,
    visible_prefix,
)

SPEC = SignalSpec(prior_ctr=0.4, history_fields=("cat", "dur"))


def _log(rng: np.random.Generator, n: int = 400, n_users: int = 12, n_items: int = 9) -> StatLog:
    return StatLog(user=rng.integers(0, n_users, n), item=rng.integers(0, n_items, n),
                   ts=rng.integers(0, 60, n), y=rng.integers(0, 2, n).astype(np.float64),
                   groups=rng.integers(0, 3, (n, 2)))


def test_count_before_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    lk, lo, ly = rng.integers(0, 5, 200), rng.integers(0, 30, 200), rng.integers(0, 2, 200)
    qk, qo = rng.integers(0, 7, 50), rng.integers(-2, 33, 50)
    n, c = count_before(lk, lo, ly, qk, qo)
    for r in range(50):
        hit = (lk == qk[r]) & (lo < qo[r])
        assert n[r] == hit.sum() and c[r] == ly[hit].sum()


def test_dense_keys_identify_tuples() -> None:
    keys = dense_keys(np.array([1, 1, 2, 1]), np.array([5, 6, 5, 5]))
    assert keys[0] == keys[3] and len(set(keys.tolist())) == 3


def test_item_stats_asof_follow_the_rule_by_brute_force() -> None:
    """Other users' rows on the same item, strictly earlier; within the same group value for groups."""
    rng = np.random.default_rng(1)
    log = _log(rng)
    q_user, q_item, q_ts = rng.integers(0, 15, 80), rng.integers(0, 10, 80), rng.integers(0, 70, 80)
    q_groups = rng.integers(0, 3, (80, 2))
    stats = item_stats_asof(log, q_user, q_item, q_ts, q_groups)
    for r in range(80):
        seen = (log.item == q_item[r]) & (log.ts < q_ts[r]) & (log.user != q_user[r])
        assert stats.impressions[r] == seen.sum() and stats.clicks[r] == log.y[seen].sum()
        for j in range(2):
            g = seen & (log.groups[:, j] == q_groups[r, j])
            assert stats.group_impressions[r, j] == g.sum() and stats.group_clicks[r, j] == log.y[g].sum()


def test_fit_item_codes_rank_by_count_with_min_count_and_cap() -> None:
    train_item = np.array([3, 3, 3, 1, 1, 4, 4, 0])
    assert fit_item_codes(train_item, 6, min_count=2, cap=10).tolist() == [0, 2, 0, 1, 3, 0]
    assert fit_item_codes(train_item, 6, min_count=2, cap=2).tolist() == [0, 2, 0, 1, 0, 0]


def _item_schema(log: StatLog, spec: SignalSpec) -> FeatureSchema:
    values = item_signal_values(item_stats_asof(log, log.user, log.item, log.ts, log.groups), spec, ("g0", "g1"))
    feats = fit_item_table_features(values, spec, ("g0", "g1"), n_item_codes=4)
    base = (CategoricalFeature("g0", "user", ("a", "b")), CategoricalFeature("g1", "user", ("a", "b")),
            CategoricalFeature("cat", "item", ("x", "y")))
    return FeatureSchema(base + feats, ("g0", "g1"), signals=spec.to_dict())


def test_item_table_equals_asof_for_an_unseen_user_now() -> None:
    rng = np.random.default_rng(2)
    log = _log(rng)
    spec = SignalSpec(prior_ctr=0.4, kinds=("item_stats", "item_code"))
    schema = _item_schema(log, spec)
    codes = fit_item_codes(log.item, 11, min_count=30, cap=4)
    item_ids = np.array([f"v{i}" for i in range(11)], dtype=object)
    table = build_item_table(schema, log, item_ids=item_ids, item_codes=codes)
    feats = [f for f in schema.features if f.source == "item_table"]
    assert table.columns == tuple(f.name for f in feats)
    items = np.arange(11)
    for group in ([1, 2], [0, 0], [2, 1]):
        q_groups = np.tile(group, (11, 1))
        stats = item_stats_asof(log, np.full(11, 99), items, np.full(11, 10**6), q_groups)
        expected = encode_item_signals(feats, item_signal_values(stats, spec, ("g0", "g1")), codes)
        got = table.candidate_codes(item_ids, group)  # items 9, 10: unknown → default row
        np.testing.assert_array_equal(got, expected)
    assert set(table.item_ids) == {f"v{i}" for i in range(9)}


def test_item_table_as_of_cuts_later_rows() -> None:
    rng = np.random.default_rng(3)
    log = _log(rng)
    spec = SignalSpec(prior_ctr=0.4, kinds=("item_stats",))
    schema = _item_schema(log, spec)
    ids = np.array([str(i) for i in range(9)], dtype=object)
    table = build_item_table(schema, log, item_ids=ids, item_codes=np.zeros(9, np.int64), as_of_ms=30)
    feats = [f for f in schema.features if f.source == "item_table"]
    stats = item_stats_asof(log, np.full(9, -1), np.arange(9), np.full(9, 30), np.zeros((9, 2), np.int64))
    expected = encode_item_signals(feats, item_signal_values(stats, spec, ("g0", "g1")), None)
    np.testing.assert_array_equal(table.candidate_codes(ids, [0, 0]), expected)


def _history_rows(rng: np.random.Generator, n_users: int = 6) -> tuple[np.ndarray, ...]:
    users, ts, parts = [], [], []
    for u in range(n_users):
        n = int(rng.integers(3, 30))
        t = np.sort(rng.integers(0, 15, n))  # repeated timestamps on purpose
        users.append(np.full(n, u))
        ts.append(t)
        parts.append(np.where(np.arange(n) < 6 * n // 10, 0, np.where(np.arange(n) < 8 * n // 10, 1, 2)))
    user, t, part = np.concatenate(users), np.concatenate(ts), np.concatenate(parts)
    x = np.stack([rng.integers(0, 3, user.size), rng.integers(0, 4, user.size), rng.integers(0, 4, user.size)], 1)
    y = rng.integers(0, 2, user.size).astype(np.float64)
    return user, t, part, x, y


def test_visible_prefix_rule_by_brute_force() -> None:
    user, ts, part, _, _ = _history_rows(np.random.default_rng(4))
    vis = visible_prefix(user, ts, part)
    for r in range(user.size):
        mine = np.flatnonzero(user == user[r])
        if part[r] == 0:
            expected = int(((ts[mine] < ts[r]) & (part[mine] == 0)).sum())
        else:
            expected = int((part[mine] < part[r]).sum())
        assert vis[r] == expected, r


def _history_schema(values: dict[str, np.ndarray]) -> FeatureSchema:
    base = (CategoricalFeature("u", "user", ("a", "b")), CategoricalFeature("cat", "item", ("x", "y", "z")),
            CategoricalFeature("dur", "item", bucket_edges=(1.0, 2.0)))
    return FeatureSchema(base + fit_history_features(values, SPEC.history_fields, n_buckets=4),
                         signals=SPEC.to_dict())


def test_history_streaming_equals_vectorised_and_brute_force() -> None:
    user, ts, part, x, y = _history_rows(np.random.default_rng(5))
    vis = visible_prefix(user, ts, part)
    values = history_values_asof(user, x[:, 1:], y, vis, SPEC, SPEC.history_fields)
    schema = _history_schema(values)
    hist_feats = [f for f in schema.features if f.source == "history"]
    # brute force on the raw counts: the user's visible rows with the same value
    for r in range(0, user.size, 3):
        mine = np.flatnonzero(user == user[r])[: vis[r]]
        for j, field in enumerate(SPEC.history_fields):
            assert values[f"hist_count@{field}"][r] == (x[mine, 1 + j] == x[r, 1 + j]).sum()
    # streaming: a device observing its rows in time, scoring val/test from the state at the split start
    from fedpa.signals import encode_history

    expected = encode_history(hist_feats, values)
    got = np.zeros_like(expected)
    for u in np.unique(user):
        state = HistoryState.for_schema(schema)
        rows = np.flatnonzero(user == u)
        train = rows[part[rows] == 0]
        for t in np.unique(ts[train]):
            now = train[ts[train] == t]
            got[now] = state.codes(x[now])
            state.observe(x[now], y[now])
        for k in (1, 2):
            now = rows[part[rows] == k]
            got[now] = state.codes(x[now])
            state.observe(x[now], y[now])
    np.testing.assert_array_equal(got, expected)


def test_history_state_round_trips_json_and_refuses_other_fields() -> None:
    user, ts, part, x, y = _history_rows(np.random.default_rng(6), n_users=2)
    values = history_values_asof(user, x[:, 1:], y, visible_prefix(user, ts, part), SPEC, SPEC.history_fields)
    schema = _history_schema(values)
    state = HistoryState.for_schema(schema)
    state.observe(x[:10], y[:10])
    again = HistoryState.for_schema(schema)
    again.load_dict(json.loads(json.dumps(state.to_dict())))
    np.testing.assert_array_equal(again.codes(x), state.codes(x))
    with pytest.raises(DataError, match="rebuild"):
        again.load_dict({**state.to_dict(), "fields": ["other"]})
    with pytest.raises(DataError, match="labels"):
        state.observe(x[:2], y[:3])


def test_history_delta_is_zero_without_rows_and_tracks_the_users_rate() -> None:
    values = history_values_asof(np.zeros(4, np.int64), np.array([[0], [0], [1], [0]]), np.array([1, 1, 0, 0.0]),
                                 np.array([0, 1, 2, 3]), SPEC, ("cat",))
    delta = values["hist_ctr_delta@cat"]
    assert delta[0] == 0.0 and delta[2] == pytest.approx(0.0)  # value 1 never seen before
    assert delta[1] > 0 and delta[3] > 0  # value 0 clicked more than the user's smoothed rate


def test_schema_round_trip_with_sources_and_old_manifests() -> None:
    f = CategoricalFeature("item_ctr", "item", source="item_table", signal="ctr", bucket_edges=(0.1, 0.5),
                           bucket_transform="identity")
    schema = FeatureSchema((CategoricalFeature("u", "user", ("a",)), CategoricalFeature("c", "item", ("x",)), f,
                            CategoricalFeature("item_code", "item", source="item_table", n_codes=7)),
                           signals=SPEC.to_dict())
    again = FeatureSchema.from_dict(json.loads(json.dumps(schema.to_dict())))
    assert again == schema and again.positions("item_table") == (2, 3)
    assert again.cardinalities == (2, 2, 4, 8)
    assert f.encode([0.05, 0.1, 0.7, -0.3]).tolist() == [1, 2, 3, 1]  # identity: negatives are not clipped
    old = {"features": [{"name": "u", "side": "user", "vocabulary": ["a"], "bucket_edges": None,
                         "hash_buckets": 0}], "group_attributes": []}
    assert FeatureSchema.from_dict(old).features[0].source == "user"
    assert schema.features[3].encode([0, 3, 8, None]).tolist() == [0, 3, 0, 0]
    with pytest.raises(DataError, match="side"):
        CategoricalFeature("h", "user", source="history")
    with pytest.raises(DataError, match="ordered by source"):
        FeatureSchema((CategoricalFeature("u", "user", ("a",)), f, CategoricalFeature("c", "item", ("x",))))


def test_select_kinds_and_spec_validation() -> None:
    assert select_kinds("full") == ("item_stats", "item_code", "history")
    assert select_kinds("full", "history,item_code") == ("item_stats",)
    assert select_kinds("base") == ()
    with pytest.raises(ConfigError, match="unknown input kind 'histroy'"):
        select_kinds("full", "histroy")
    with pytest.raises(ConfigError, match="--features"):
        select_kinds("all")
    with pytest.raises(ConfigError, match="prior_ctr"):
        SignalSpec(prior_ctr=1.0)
    assert SignalSpec.from_dict({}).kinds == ()
    assert SignalSpec.from_dict(SPEC.to_dict()) == SPEC

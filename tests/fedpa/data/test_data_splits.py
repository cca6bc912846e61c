"""Split properties: chronology within users, disjoint pools, the 80/20 rule, dropping, time split."""

from __future__ import annotations

import numpy as np
import pytest

from fedpa.data import Interactions, load_dataset
from fedpa.data.splits import assign_open_users, chronological_parts, time_cut
from fedpa.errors import ConfigError


@pytest.fixture(scope="module")
def ds():
    return load_dataset("synthetic", seed=3, n_users=300, n_items=120, interactions_per_user=20)


def _check_chronology(train: Interactions, val: Interactions, test: Interactions) -> None:
    for u in np.unique(test.user):
        t, v, s = train.ts[train.user == u], val.ts[val.user == u], test.ts[test.user == u]
        assert len(t) and len(v) and len(s)
        assert t.max() <= v.min() and v.max() <= s.min()


def test_rows_sorted_by_user_then_time(ds) -> None:
    for name in ("open_train", "private_test"):
        part = ds.split(name)
        key = part.user * (1 << 42) + (part.ts - part.ts.min())
        assert np.all(np.diff(key) >= 0)


def test_chronological_per_user(ds) -> None:
    _check_chronology(ds.open_train, ds.open_val, ds.open_test)
    _check_chronology(ds.private_train, ds.private_val, ds.private_test)


def test_private_users_never_in_open_splits(ds) -> None:
    assert not set(ds.private_users) & set(ds.open_users)
    for name in ("open_train", "open_val", "open_test"):
        assert not set(np.unique(ds.split(name).user)) & set(ds.private_users)
    for name in ("private_train", "private_val", "private_test"):
        assert set(np.unique(ds.split(name).user)) <= set(ds.private_users)


def test_paper_rule_counts_exactly() -> None:
    attr = np.array(["a"] * 500 + ["b"] * 300 + ["c"] * 200, dtype=object)
    is_open = assign_open_users(attr, ["a"], seed=1)
    assert is_open[:500].sum() == 400 and is_open[500:].sum() == 100
    assert not np.array_equal(is_open, assign_open_users(attr, ["a"], seed=2))
    np.testing.assert_array_equal(is_open, assign_open_users(attr, ["a"], seed=1))
    with pytest.raises(ConfigError):
        assign_open_users(attr, ["a"], seed=1, pool_fraction=1.5)


def test_loaded_split_follows_80_20(ds) -> None:
    activity = ds.schema.features[ds.schema.names.index("activity")]
    col = ds.schema.names.index("activity")
    high = ds.user_x[:, col] == activity.encode(["high"])[0]
    is_open = np.zeros(ds.n_users, dtype=bool)
    is_open[ds.open_users] = True
    assert abs(is_open[high].mean() - 0.8) < 0.01 and abs(is_open[~high].mean() - 0.2) < 0.01


def test_60_20_20_boundaries_and_dropping() -> None:
    user = np.repeat(np.arange(6), [1, 2, 3, 5, 10, 7])
    parts = chronological_parts(user)
    by_user = [parts[user == u].tolist() for u in range(6)]
    assert by_user[0] == [-1] and by_user[1] == [-1, -1]
    assert by_user[2] == [0, 1, 2]
    assert by_user[3] == [0, 0, 0, 1, 2]
    assert by_user[4] == [0] * 6 + [1] * 2 + [2] * 2
    assert by_user[5] == [0] * 4 + [1] + [2] * 2
    for n in range(3, 200):
        p = chronological_parts(np.zeros(n, dtype=np.int64))
        assert set(p.tolist()) == {0, 1, 2}


def test_time_split_cuts_the_calendar() -> None:
    ds = load_dataset("synthetic", split="time", seed=1, n_users=120, interactions_per_user=20)
    cut = ds.report["time_cut_ms"]
    assert ds.open_test.ts.max() < cut <= ds.private_train.ts.min()
    assert len(set(ds.open_users) & set(ds.private_users)) > 0  # the same people, two periods
    _check_chronology(ds.private_train, ds.private_val, ds.private_test)
    assert time_cut(np.arange(10), 0.5) == 5


def test_max_users_subsamples_deterministically() -> None:
    a = load_dataset("synthetic", seed=2, max_users=50)
    b = load_dataset("synthetic", seed=2, max_users=50)
    assert a.n_users == 50
    np.testing.assert_array_equal(a.user_ids, b.user_ids)


def test_select_keeps_columns_aligned(ds) -> None:
    part = ds.private_train
    sub = part.select(part.user == part.user[0])
    assert len(sub) == int((part.user == part.user[0]).sum())
    np.testing.assert_array_equal(sub.x, part.x[part.user == part.user[0]])
    assert len(part.select(np.array([2, 0]))) == 2

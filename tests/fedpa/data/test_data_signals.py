"""The new input columns of a built dataset obey the leak-free rule, checked by brute force on sampled rows."""

from __future__ import annotations

import numpy as np
import pytest

from fedpa.data import load_dataset
from fedpa.signals import SignalSpec, history_values, item_signal_values, smoothed_ctr
from fedpa.signals.items import ItemStats


@pytest.fixture(scope="module")
def ds():
    return load_dataset("synthetic", seed=1, n_users=150, n_items=60, interactions_per_user=20)


def _all_rows(ds):
    parts = [ds.split(n) for n in ("open_train", "open_val", "open_test", "private_train", "private_val",
                                   "private_test")]
    return parts


def test_item_statistics_use_only_other_open_users_earlier_rows(ds) -> None:
    spec = SignalSpec.from_dict(ds.schema.signals)
    schema = ds.schema
    log = ds.signal_log
    assert set(np.unique(log.user)) <= set(ds.open_users.tolist()) | set(range(ds.n_users))
    open_rows = np.concatenate([ds.split(n).user for n in ("open_train", "open_val", "open_test")])
    assert set(np.unique(open_rows)) <= set(np.unique(log.user))  # every kept open row is in the log
    gpos = list(schema.group_positions)
    rng = np.random.default_rng(0)
    for split in _all_rows(ds):
        for r in rng.choice(len(split), size=15, replace=False):
            u, it, t = split.user[r], split.item[r], split.ts[r]
            seen = (log.item == it) & (log.ts < t) & (log.user != u)
            groups = split.x[r, gpos]
            gi = np.array([[(seen & (log.groups[:, j] == g)).sum() for j, g in enumerate(groups)]])
            gc = np.array([[log.y[seen & (log.groups[:, j] == g)].sum() for j, g in enumerate(groups)]])
            values = item_signal_values(ItemStats(np.array([seen.sum()]), np.array([log.y[seen].sum()]), gi, gc),
                                        spec, schema.group_attributes)
            for name, v in values.items():
                col = schema.names.index(name)
                assert split.x[r, col] == schema.features[col].encode(v)[0], (name, r)
            assert split.x[r, schema.names.index("item_code")] == ds.item_codes[it]


def test_history_uses_only_the_users_rows_before_the_row_or_its_split(ds) -> None:
    spec = SignalSpec.from_dict(ds.schema.signals)
    schema = ds.schema
    fields = spec.history_fields
    fpos = [schema.names.index(f) for f in fields]
    rng = np.random.default_rng(1)
    for pool in ("open", "private"):
        train, val, test = (ds.split(f"{pool}_{p}") for p in ("train", "val", "test"))
        for split, earlier in ((train, None), (val, [train]), (test, [train, val])):
            for r in rng.choice(len(split), size=15, replace=False):
                u = split.user[r]
                if earlier is None:  # a training row: the user's strictly earlier training rows
                    mine = (train.user == u) & (train.ts < split.ts[r])
                    hx, hy = train.x[mine], train.y[mine]
                else:  # a val/test row: the user's rows of the earlier parts, none of its own part
                    hx = np.concatenate([e.x[e.user == u] for e in earlier])
                    hy = np.concatenate([e.y[e.user == u] for e in earlier])
                count = np.array([[(hx[:, p] == split.x[r, p]).sum() for p in fpos]])
                clicks = np.array([[hy[hx[:, p] == split.x[r, p]].sum() for p in fpos]])
                values = history_values(count, clicks, np.array([len(hy)]), np.array([hy.sum()]), spec, fields)
                for name, v in values.items():
                    col = schema.names.index(name)
                    assert split.x[r, col] == schema.features[col].encode(v)[0], (pool, name, r)


def test_base_and_full_share_the_split_and_the_base_columns(ds) -> None:
    base = load_dataset("synthetic", seed=1, n_users=150, n_items=60, interactions_per_user=20, features="base")
    n = len(base.schema.features)
    assert ds.schema.features[:n] == base.schema.features
    np.testing.assert_array_equal(ds.private_test.x[:, :n], base.private_test.x)
    assert base.schema.signals == {} and ds.schema.signals["kinds"] == ["item_stats", "item_code", "history"]
    # the statistic columns (narrow on the student) are exactly the tail after the base columns and the item code
    assert ds.schema.names[n] == "item_code"
    assert base.schema.n_signal_features == 0 and ds.schema.n_signal_features == len(ds.schema.features) - n - 1
    only = load_dataset("synthetic", seed=1, n_users=150, n_items=60, interactions_per_user=20, without="history")
    assert not any(f.source == "history" for f in only.schema.features)
    ceiling = load_dataset("synthetic", seed=1, n_users=150, n_items=60, interactions_per_user=20,
                           stats_from="all")
    assert len(ceiling.signal_log.user) > len(ds.signal_log.user)  # private users' rows counted too
    assert smoothed_ctr(0, 0, 0.3, 5.0) == pytest.approx(0.3)

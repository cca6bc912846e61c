"""The device's signal columns: item-table rows on the wire = the maths' table, history in the store
(persisted, caught up after a crash, replayed leak-free), and never in any request."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge.signals import HISTORY_FILE, DeviceSignals
from edge.store import LocalStore
from fedpa.data.schema import CategoricalFeature, FeatureSchema
from fedpa.errors import BundleError
from fedpa.runtime.features import FeatureEncoder
from fedpa.runtime.items import ItemRows, ItemTableFile
from fedpa.signals import (
    SignalSpec,
    StatLog,
    build_item_table,
    encode_history,
    fit_history_features,
    fit_item_codes,
    fit_item_table_features,
    history_values_asof,
    item_signal_values,
    item_stats_asof,
    visible_prefix,
)

SPEC = SignalSpec(prior_ctr=0.3, history_fields=("cat",))
BASE = (CategoricalFeature("age", "user", ("1", "2")), CategoricalFeature("region", "user", ("a", "b", "c")),
        CategoricalFeature("cat", "item", ("x", "y", "z", "w")))


def history_schema() -> FeatureSchema:
    rng = np.random.default_rng(0)
    n = 60
    values = history_values_asof(np.zeros(n, np.int64), rng.integers(1, 5, (n, 1)), rng.integers(0, 2, n),
                                 np.arange(n), SPEC, SPEC.history_fields)
    return FeatureSchema(BASE + fit_history_features(values, SPEC.history_fields, n_buckets=4),
                         ("age", "region"), signals=SPEC.to_dict())


def rows(rng: np.random.Generator, n: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.zeros((n, width), np.int64)
    x[:, 0], x[:, 1], x[:, 2] = 1, 2, rng.integers(1, 5, n)
    return x, rng.integers(0, 2, n).astype(np.float32), np.sort(rng.integers(0, 12, n))


def test_wire_rows_equal_the_signals_table_for_every_group_and_unknown_items() -> None:
    rng = np.random.default_rng(1)
    log = StatLog(user=rng.integers(0, 10, 300), item=rng.integers(0, 8, 300), ts=rng.integers(0, 50, 300),
                  y=rng.integers(0, 2, 300).astype(np.float64), groups=np.stack(
                      [rng.integers(0, 3, 300), rng.integers(0, 4, 300)], 1))
    spec = SignalSpec(prior_ctr=0.4, kinds=("item_stats", "item_code"))
    values = item_signal_values(item_stats_asof(log, log.user, log.item, log.ts, log.groups), spec, ("age", "region"))
    schema = FeatureSchema(BASE + fit_item_table_features(values, spec, ("age", "region"), n_item_codes=5),
                           ("age", "region"), signals=spec.to_dict())
    codes = fit_item_codes(log.item, 10, min_count=20, cap=5)
    ids = np.array([f"i{k}" for k in range(10)], dtype=object)
    table = build_item_table(schema, log, item_ids=ids, item_codes=codes)

    wire = ItemTableFile.decode(ItemTableFile.from_signals(table, schema, model_id="m", model_version=1,
                                                           table_version=1).encode())
    wire.check_schema(schema)
    asked = np.array(["i3", "nope", "i0", "i9", "i7"], dtype=object)
    answer = ItemRows.decode(wire.lookup(asked).encode())
    order = [f.name for f in schema.features if f.source == "item_table"]

    assert answer.known.tolist() == [True, False, True, False, True]  # i9 has no log row and no code
    for group in ({"age": 1, "region": 2}, {"age": 0, "region": 0}, {"age": 2, "region": 3}):
        got = answer.columns_for(schema, group)
        expected = table.candidate_codes(asked, [group["age"], group["region"]])
        np.testing.assert_array_equal(np.stack([got[n] for n in order], 1), expected)
    batch = wire.lookup(np.array([f"i{k % 12}" for k in range(256)], dtype=object)).encode()
    assert len(batch) / 256 <= 64  # the wire budget per candidate (rows are 4 + C + 1 bytes + the header)


def test_fill_refuses_to_guess_missing_signal_columns() -> None:
    encoder = FeatureEncoder(history_schema())
    x = np.zeros((2, len(encoder.schema.features)), np.int64)

    with pytest.raises(BundleError, match="history"):
        encoder.fill(x)


def test_history_survives_restarts_and_catches_up_after_a_crash(tmp_path) -> None:
    schema = history_schema()
    width = len(schema.features)
    rng = np.random.default_rng(2)
    x, y, ts = rows(rng, 30, width)
    store = LocalStore.open(tmp_path / "dev")
    signals = DeviceSignals.open(store, schema)
    full = signals.replay(x[:20], y[:20], ts[:20])
    store.save_log(full, y[:20], ts[:20])
    signals.save()
    signals.record(signals.fill(x[20:25]), y[20:25], ts[20:25])
    store.append_log(signals.fill(x[25:]), y[25:], ts[25:])  # a crash before the history was saved

    reopened = DeviceSignals.open(LocalStore.open(tmp_path / "dev"), schema)
    reference = DeviceSignals(store, schema)
    reference.history.observe(store.load_log()[0], store.load_log()[1])
    saved = json.loads((tmp_path / "dev" / HISTORY_FILE).read_text())

    assert reopened.observed == 30 and saved["observed"] == 30
    probe = rows(np.random.default_rng(3), 8, width)[0]
    np.testing.assert_array_equal(reopened.fill(probe), reference.fill(probe))
    assert reopened.history.total == 30


def test_replay_sees_only_strictly_earlier_rows(tmp_path) -> None:
    schema = history_schema()
    x, y, ts = rows(np.random.default_rng(4), 40, len(schema.features))
    signals = DeviceSignals.open(LocalStore.open(tmp_path / "dev"), schema)

    full = signals.replay(x, y, ts)

    feats = [f for f in schema.features if f.source == "history"]
    values = history_values_asof(np.zeros(len(y), np.int64), x[:, [2]], y,
                                 visible_prefix(np.zeros(len(y), np.int64), ts, np.zeros(len(y), np.int64)),
                                 SPEC, SPEC.history_fields)
    np.testing.assert_array_equal(full[:, 3:], encode_history(feats, values))
    np.testing.assert_array_equal(full[:, :3], x[:, :3])


def test_no_request_ever_carries_the_history(make_device, fake_server, tmp_path) -> None:
    schema = history_schema()
    device = make_device(privacy=None)
    x, y, ts = rows(np.random.default_rng(5), 24, len(schema.features))
    signals = DeviceSignals.open(device.store, schema)
    full = signals.replay(x, y, ts)
    device.store.save_log(full, y, ts)
    signals.save()
    stored = (device.store.root / HISTORY_FILE).read_bytes()
    counts = np.array([v for table in signals.history.counts for cell in table.values() for v in cell])

    device.run_round()
    device.run_round()

    assert signals.history.total == 24 and len(fake_server.accepted) == 2
    for body in fake_server.bodies:  # every request of the device's life
        assert stored not in body and b"hist_" not in body and b"total_clicks" not in body
        assert counts.astype(np.float64).tobytes() not in body
        assert full[:, 3:].tobytes() not in body  # nor the history codes of the log

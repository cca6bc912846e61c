"""The streaming weighted mean (the simulation's fast path) is aggregate_bank's weighted mean."""

from typing import Any

import numpy as np
import pytest

from fedpa.aggregation import ClientUpdate, StreamingMean, aggregate_bank
from fedpa.errors import ConfigError
from fedpa.state import SharedStateSpec

SPEC = SharedStateSpec.build(gate=[("gate.w", (3, 2))], group=[("lora.a", "level", (4,)), ("lora.b", "age", (2, 2))],
                             cardinalities={"level": 3, "age": 4})
MEDIAN: Any = "median"  # aggregate_bank's data-dependent bound: needs every norm at once
OWNER = {t.param: t.attribute for t in SPEC.tensors}


def round_of(n: int, seed: int = 0):
    """n clients' stacked uploads (param → [n, ...]), their group values and weights."""
    rng = np.random.default_rng(seed)
    shapes = {t.param: t.shape for t in SPEC.tensors}
    deltas = {p: rng.normal(0, 0.3, (n, *s)).astype(np.float32) for p, s in shapes.items()}
    values = {"level": rng.integers(0, 3, n), "age": rng.choice([0, 1, 3], n)}  # age 2: nobody reports
    weights = rng.integers(1, 60, n).astype(np.float64)
    bank = {t.name: rng.normal(0, 1, t.shape).astype(np.float32) for t in SPEC.tensors}
    return deltas, values, weights, bank


def per_client(deltas, values, weights) -> list[ClientUpdate]:
    """The same uploads as the aggregator receives them: one ClientUpdate per client, wire names."""
    names = {(t.param, t.value): t.name for t in SPEC.tensors}
    return [ClientUpdate(deltas={names[(p, None if OWNER[p] is None else int(values[OWNER[p]][i]))]: d[i]
                                 for p, d in deltas.items()}, weight=float(w))
            for i, w in enumerate(weights)]


@pytest.mark.parametrize("options", [
    {},
    {"server_lr": 2.5, "weight_cap": 20.0},
    {"norm_bound": 1.5, "min_reporters": 12},
])
def test_streaming_mean_fed_in_chunks_equals_aggregate_bank(options):
    # Prepare
    deltas, values, weights, bank = round_of(40)
    mean = StreamingMean(SPEC, **options)
    # Execute: three uneven chunks of clients
    for lo, hi in ((0, 7), (7, 30), (30, 40)):
        mean.add({p: d[lo:hi] for p, d in deltas.items()}, {a: v[lo:hi] for a, v in values.items()}, weights[lo:hi])
    fast, fast_report = mean.finish(bank)
    exact, exact_report = aggregate_bank(bank, per_client(deltas, values, weights), SPEC, **options)
    # Assert
    assert fast.keys() == exact.keys() == bank.keys()
    for name in exact:
        np.testing.assert_allclose(fast[name], exact[name], rtol=1e-6, atol=1e-7, err_msg=name)
    assert sorted(fast_report.updated) == sorted(exact_report.updated)
    assert fast_report.skipped_groups == exact_report.skipped_groups
    assert fast_report.reporters == exact_report.reporters
    assert "age=2@" not in " ".join(fast_report.updated)  # a value nobody reported keeps its tensor
    np.testing.assert_array_equal(fast["lora.b@2"], bank["lora.b@2"])
    if options.get("min_reporters"):
        assert exact_report.skipped_groups  # the threshold bites
    if options.get("norm_bound"):  # and the bound scales some update down
        norms = np.sqrt(sum(np.square(d.reshape(40, -1), dtype=np.float64).sum(1) for d in deltas.values()))
        assert (norms > options["norm_bound"]).any()


def test_streaming_mean_refuses_what_it_cannot_stream():
    with pytest.raises(ConfigError, match="numeric norm bound"):
        StreamingMean(SPEC, norm_bound=MEDIAN)
    with pytest.raises(ConfigError, match="min_reporters"):
        StreamingMean(SPEC, min_reporters=0)

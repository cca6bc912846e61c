"""The robust parts of fedpa.aggregation the aggregator's defaults rely on (pure numpy)."""

from __future__ import annotations

import numpy as np
import pytest
from agg_helpers import SPEC

from fedpa.aggregation import (
    ClientUpdate,
    CoordinateMedian,
    UnsafeAggregationError,
    aggregate_bank,
    check_step,
    ldp_norm_bound,
)

G = {"age": 0, "region": 0}
GATE = "layers.0.gate.w1"


def _const(value: float) -> dict[str, np.ndarray]:
    return {t.name: np.full(t.shape, value, np.float32) for t in SPEC.for_groups(G)}


def _zero_bank() -> dict[str, np.ndarray]:
    return {t.name: np.zeros(t.shape, np.float32) for t in SPEC.tensors}


@pytest.mark.parametrize("mechanism", ["gaussian", "laplace"])
@pytest.mark.parametrize("dim", [31, 4224])
def test_honest_noised_updates_stay_under_the_ldp_bound(mechanism, dim):
    rng = np.random.default_rng(0)
    c, sigma = 1.0, 1.0
    clipped = rng.normal(size=(500, dim))
    clipped *= c / np.linalg.norm(clipped, ord=1 if mechanism == "laplace" else 2, axis=1, keepdims=True)
    noise = (rng.normal(size=clipped.shape) if mechanism == "gaussian" else rng.laplace(size=clipped.shape))
    norms = np.linalg.norm(clipped + sigma * c * noise, axis=1)

    bound = ldp_norm_bound(clip_norm=c, noise_multiplier=sigma, mechanism=mechanism, dim=dim)

    assert norms.max() < bound < 1.5 * norms.max()  # never clips an honest update, yet not loose
    assert ldp_norm_bound(clip_norm=c, noise_multiplier=sigma, mechanism="none", dim=dim) is None


def test_one_client_is_one_vote_for_thresholds_and_robust_rules():
    updates = [ClientUpdate(_const(1.0), weight=1, client="a"), ClientUpdate(_const(1.0), weight=1, client="b"),
               *[ClientUpdate(_const(100.0), weight=1, client="evil") for _ in range(5)]]

    new, report = aggregate_bank(_zero_bank(), updates, SPEC, strategy=CoordinateMedian(), min_reporters=3)

    assert report.reporters == {"gate": 3, "age=0": 3, "region=0": 3} and report.skipped_groups == {}
    assert np.allclose(new[GATE], 1.0)  # median over 3 clients, not over 7 uploads (which would be 100)


def test_a_clients_updates_are_merged_by_weight():
    updates = [ClientUpdate(_const(1.0), weight=1, client="a"), ClientUpdate(_const(4.0), weight=3, client="a")]

    new, report = aggregate_bank(_zero_bank(), updates, SPEC)

    assert report.reporters["gate"] == 1 and np.allclose(new[GATE], (1 + 12) / 4)


def test_median_weight_cap_and_median_norm_bound_limit_an_outlier():
    honest = [ClientUpdate(_const(0.1), weight=10, client=i) for i in range(4)]
    loud = ClientUpdate(_const(-1000.0), weight=1_000_000, client="evil")

    new, _ = aggregate_bank(_zero_bank(), [*honest, loud], SPEC, weight_cap_median=4.0, norm_bound="median")

    # the outlier is scaled to the median norm (to -0.1) and weighs 4 × the median weight: 40 of 80
    assert np.allclose(new[GATE], (40 * 0.1 - 40 * 0.1) / 80, atol=1e-6)


def test_check_step_refuses_non_finite_and_runaway_results():
    old = {"w": np.zeros(4, np.float32)}

    check_step(old, {"w": np.full(4, 0.4, np.float32)}, max_step=1.0)
    with pytest.raises(UnsafeAggregationError, match="moved by 2") as runaway:
        check_step(old, {"w": np.full(4, 1.0, np.float32)}, max_step=1.0)
    with pytest.raises(UnsafeAggregationError, match="not finite") as infinite:
        check_step(old, {"w": np.array([0, np.inf, 0, 0], np.float32)}, max_step=None)
    assert (runaway.value.reason, infinite.value.reason) == ("step_too_large", "non_finite")

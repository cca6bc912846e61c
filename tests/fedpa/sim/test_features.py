"""Every docs/design.md §8 method runs over the full inputs (item table + history columns), and paired CIs line up."""

from __future__ import annotations

import numpy as np
import pytest

from fedpa.sim.experiments import TABLE_METHODS, paired_ci
from fedpa.sim.methods import get_method
from fedpa.sim.runner import SimConfig, simulate
from tests.fedpa.sim.conftest import quick_student


@pytest.fixture(scope="module")
def full_student(small_full_ds):
    return quick_student(small_full_ds)


def test_full_inputs_add_item_table_and_history_columns(small_full_ds, small_ds):
    sources = [f.source for f in small_full_ds.schema.features]
    assert "item_table" in sources and "history" in sources
    assert small_full_ds.private_test.x.shape[1] > small_ds.private_test.x.shape[1]
    np.testing.assert_array_equal(small_full_ds.private_test.y, small_ds.private_test.y)  # same split


@pytest.mark.parametrize("method", TABLE_METHODS)
def test_every_table_method_runs_with_full_features(small_full_ds, full_student, method):
    result = simulate(small_full_ds, full_student, get_method(method), SimConfig(rounds=1))
    assert np.isfinite(result.test["gauc"])
    assert result.test_scores is not None and result.test_scores.shape == (len(small_full_ds.private_test),)


def test_paired_ci_uses_the_same_rows_for_static_and_trained_methods(small_full_ds, full_student):
    fm = simulate(small_full_ds, full_student, get_method("fm-only"))
    fedpa = simulate(small_full_ds, full_student, get_method("fedpa", lr=1.0), SimConfig(rounds=2))
    np.testing.assert_array_equal(fm.test_user, fedpa.test_user)
    np.testing.assert_array_equal(fm.test_y, fedpa.test_y)
    ci = paired_ci([fedpa], [fm])
    assert ci is not None
    assert ci["delta"] == pytest.approx(fedpa.test["gauc"] - fm.test["gauc"], abs=1e-9)
    assert ci["low"] <= ci["delta"] <= ci["high"]

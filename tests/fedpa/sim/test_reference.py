"""Issue 14's research helpers: the everyone-rows reference, the validation pick of input kinds, trial epochs."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest
import torch

from fedpa.data import load_dataset
from fedpa.errors import ConfigError
from fedpa.sim.experiments import ExperimentConfig, cached_student, everyone, pick_inputs, run_trial
from fedpa.sim.methods import get_method
from fedpa.sim.runner import simulate
from fedpa.train import TrainConfig, load_checkpoint, save_checkpoint
from tests.fedpa.sim.conftest import quick_student

OPTIONS = {"n_users": 120, "n_items": 80, "interactions_per_user": 30}


def test_everyone_adds_exactly_the_private_train_and_val_rows(small_full_ds):
    # Execute
    merged = everyone(small_full_ds)
    # Assert: open train/val now hold open + private rows, sorted by (user, ts); private splits untouched
    for name, private in (("open_train", "private_train"), ("open_val", "private_val")):
        part, before, extra = merged.split(name), small_full_ds.split(name), small_full_ds.split(private)
        assert len(part) == len(before) + len(extra)
        assert np.all(np.diff(part.user) >= 0)
        same_user = part.user[1:] == part.user[:-1]
        assert np.all(np.diff(part.ts)[same_user] >= 0)
        got = sorted(map(tuple, np.c_[part.user, part.ts, part.x, part.y]))
        want = sorted(map(tuple, np.r_[np.c_[before.user, before.ts, before.x, before.y],
                                       np.c_[extra.user, extra.ts, extra.x, extra.y]]))
        assert got == want
    for name in ("open_test", "private_train", "private_val", "private_test"):
        np.testing.assert_array_equal(merged.split(name).x, small_full_ds.split(name).x)
    assert len(small_full_ds.open_train) < len(merged.open_train)  # the input was not modified


def test_cached_student_refuses_an_unknown_row_pool(tmp_path, small_ds):
    with pytest.raises(ConfigError, match="everyone"):
        cached_student(small_ds, seed=0, cache_dir=tmp_path, rows="private")
    assert not any(tmp_path.iterdir())


def test_pick_inputs_chooses_the_best_validation_subset(tmp_path):
    # Prepare: a cached quick student for every subset of kinds, as the pick would train them
    config = ExperimentConfig(seeds=(0,), dataset_options=OPTIONS, pick_inputs=True)
    expected = {}
    for without in ((), ("item_code",), ("history",), ("item_stats",), ("item_code", "history"),
                    ("item_stats", "history"), ("item_stats", "item_code")):
        ds = load_dataset("synthetic", None, seed=0, without=without, **OPTIONS)
        kinds = "-".join(ds.schema.signals["kinds"])
        student = quick_student(ds, seed=len(without))
        save_checkpoint(tmp_path / f"synthetic-seed0-{kinds}-student.pt", student, ds.schema, kind="student",
                        metrics={"recipe": asdict(TrainConfig())})
        expected[kinds.replace("-", "+")] = (simulate(ds, student, get_method("fm-only")).val["gauc"], without)
    # Execute
    picked, scores = pick_inputs("synthetic", None, config, tmp_path)
    # Assert: every candidate scored on validation, the best one picked
    assert scores == pytest.approx({k: v for k, (v, _) in expected.items()})
    assert picked == max(expected.values())[1]


def test_cached_student_is_retrained_after_a_recipe_change(tmp_path, small_ds):
    # Prepare: a cached student trained under another recipe (pooled-AUC selection)
    stale = quick_student(small_ds, seed=0)
    path = tmp_path / "synthetic-seed0-base-student.pt"
    save_checkpoint(path, stale, small_ds.schema, kind="student",
                    metrics={"recipe": asdict(TrainConfig(select="auc", patience=3, min_epochs=1))})
    # Execute
    fresh = cached_student(small_ds, seed=0, cache_dir=tmp_path)
    # Assert: retrained with today's recipe, and the cache now records it (a second call loads it)
    assert load_checkpoint(path).metrics["recipe"] == asdict(TrainConfig())
    x = small_ds.private_val.x
    assert not np.allclose(fresh(torch.from_numpy(x)).detach().numpy(), stale(torch.from_numpy(x)).detach().numpy())
    again = cached_student(small_ds, seed=0, cache_dir=tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), fresh.state_dict().values(), strict=True))


def test_pick_inputs_needs_the_full_inputs():
    with pytest.raises(ConfigError, match="features='full'"):
        ExperimentConfig(features="base", pick_inputs=True)


def test_run_trial_takes_local_epochs_from_the_trial(small_ds, small_student):
    config = ExperimentConfig(rounds=1, seeds=(0,))
    one = run_trial(small_ds, small_student, "fedpa", {"lr": 0.3}, config, seed=0)
    three = run_trial(small_ds, small_student, "fedpa", {"lr": 0.3, "local_epochs": 3}, config, seed=0)
    assert one.info["config"]["local_epochs"] == 1 and three.info["config"]["local_epochs"] == 3
    assert "local_epochs" not in three.info["method_config"]
    assert not np.allclose(three.test_scores, one.test_scores)  # the extra epochs did train

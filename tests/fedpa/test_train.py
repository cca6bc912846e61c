"""Pre-training, distillation, checkpoints and the `fedpa pretrain/distill` CLI on synthetic data."""

import itertools
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from fedpa.data import load_dataset
from fedpa.errors import ConfigError
from fedpa.model import Backbone, student_config
from fedpa.train import (
    TrainConfig,
    adapter_config_for,
    distill,
    load_checkpoint,
    predict,
    pretrain,
    save_checkpoint,
    train_from_scratch,
)
from harness.cli import app

FAST = TrainConfig(epochs=4, patience=2)


@pytest.fixture(scope="module")
def ds():
    torch.set_num_threads(1)
    return load_dataset("synthetic", seed=0, n_users=200, interactions_per_user=30)


@pytest.fixture(scope="module")
def teacher(ds):
    return pretrain(ds, train=FAST, seed=0)


def test_pretrain_learns_and_reports_private_test_metrics(ds, teacher):
    m = teacher.metrics
    torch.manual_seed(0)
    untrained = Backbone(teacher.model.config)
    from fedpa.metrics import auc
    assert m["open_val"]["auc"] > auc(ds.open_val.y, predict(untrained, ds.open_val.x)) + 0.03
    assert 1 <= m["best_epoch"] <= m["epochs_run"] <= FAST.epochs
    assert {"auc", "gauc", "logloss", "precision"} <= m["private_test"].keys()
    assert m["parameters"] > 5 * sum(p.numel() for p in Backbone(student_config(
        ds.schema.cardinalities, len(ds.schema.user_feature_positions))).parameters())


def test_early_stopping_keeps_the_best_validation_epoch(ds, teacher):
    history = teacher.metrics["history"]
    best = max(history, key=lambda h: h[f"val_{FAST.select}"])
    assert best["epoch"] == teacher.metrics["best_epoch"]
    assert teacher.metrics["open_val"][FAST.select] == pytest.approx(best[f"val_{FAST.select}"], abs=1e-9)


@pytest.mark.parametrize("select", ["auc", "gauc"])
def test_model_selection_follows_the_chosen_metric(ds, select):
    # patience 1 with min_epochs 4: training runs 4 epochs even when the first one is best
    result = pretrain(ds, train=TrainConfig(epochs=4, patience=1, min_epochs=4, select=select, ema=0.0), seed=0)
    history = result.metrics["history"]
    assert len(history) == 4
    best = max(history, key=lambda h: (h[f"val_{select}"], -h["epoch"]))
    assert result.metrics["best_epoch"] == best["epoch"]
    assert result.metrics["open_val"][select] == pytest.approx(best[f"val_{select}"], abs=1e-9)


def test_decay_steps_back_with_a_smaller_learning_rate(ds):
    config = TrainConfig(epochs=8, patience=8, decay=0.5)
    history = pretrain(ds, train=config, seed=0).metrics["history"]
    best = -1.0
    for prev, cur in itertools.pairwise(history):
        improved = prev[f"val_{config.select}"] > best
        best = max(best, prev[f"val_{config.select}"])
        assert cur["lr"] == pytest.approx(prev["lr"] if improved else prev["lr"] * 0.5)
    assert history[-1]["lr"] < config.lr  # 8 epochs on 200 users: some epoch did not improve


def test_weight_average_is_what_gets_kept(ds):
    # with ema the scored model is the running average: a different set of weights from the raw run's
    plain = pretrain(ds, train=TrainConfig(epochs=2, patience=2, ema=0.0), seed=0).model
    averaged = pretrain(ds, train=TrainConfig(epochs=2, patience=2, ema=0.9), seed=0).model
    assert not np.allclose(predict(plain, ds.open_val.x), predict(averaged, ds.open_val.x))


@pytest.mark.parametrize("bad", [{"select": "logloss"}, {"decay": 0.0}, {"decay": 1.5}, {"ema": 1.0},
                                 {"min_epochs": 0}])
def test_bad_recipe_is_refused(bad):
    with pytest.raises(ConfigError):
        TrainConfig(**bad)


def test_distillation_matches_teacher_better_than_scratch(ds, teacher):
    student = distill(ds, teacher.model, train=FAST, seed=0)
    scratch = train_from_scratch(ds, train=FAST, seed=0)
    t = predict(teacher.model, ds.open_val.x)
    gap_distilled = np.abs(predict(student.model, ds.open_val.x) - t).mean()
    gap_scratch = np.abs(predict(scratch.model, ds.open_val.x) - t).mean()
    assert gap_distilled < gap_scratch  # soft targets pull the student towards the teacher
    assert student.metrics["kind"] == "student-distilled"


def test_checkpoint_round_trip_and_mismatch(ds, teacher, tmp_path):
    path = save_checkpoint(tmp_path / "t.pt", teacher.model, ds.schema, kind="teacher", metrics=teacher.metrics)
    ckpt = load_checkpoint(path)
    assert ckpt.kind == "teacher" and ckpt.schema == ds.schema
    assert np.array_equal(predict(ckpt.model, ds.open_val.x), predict(teacher.model, ds.open_val.x))
    raw = torch.load(path, weights_only=True)
    raw["state_dict"]["layers.0.weight"] = torch.zeros(3, 3)
    torch.save(raw, tmp_path / "bad.pt")
    with pytest.raises(ConfigError, match=r"weights do not match architecture"):
        load_checkpoint(tmp_path / "bad.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="not a readable FedPA checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")


def test_adapter_config_uses_schema_groups(ds):
    cfg = adapter_config_for(ds.schema, rank=2)
    assert cfg.group_attributes == ds.schema.group_attributes and cfg.rank == 2
    assert cfg.group_cardinalities == tuple(ds.schema.cardinalities[p] for p in ds.schema.group_positions)


def test_cli_pretrain_then_distill_writes_checkpoints_and_json(tmp_path):
    runner = CliRunner()
    opts = ["--dataset", "synthetic", "--epochs", "2"]
    result = runner.invoke(app, ["pretrain", *opts, "--out", str(tmp_path / "t.pt")])
    assert result.exit_code == 0, result.output
    student_out = str(tmp_path / "s.pt")
    result = runner.invoke(app, ["distill", "--teacher", str(tmp_path / "t.pt"), *opts, "--out", student_out])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "s.json").read_text())
    assert {"teacher", "scratch", "private_test"} <= metrics.keys()
    assert load_checkpoint(tmp_path / "s.pt").kind == "student"

"""``fedpa simulate`` writes the documented JSON; ``fedpa experiments`` writes table, JSON, PNG."""

import json

from typer.testing import CliRunner

from fedpa.train import save_checkpoint
from harness.cli import app

runner = CliRunner()
OPTIONS = ["--option", "n_users=120", "--option", "n_items=80", "--option", "interactions_per_user=30"]


def test_simulate_writes_the_result_json(tmp_path, small_ds, small_student):
    # Prepare: a student checkpoint, so the command does not distil one
    ckpt = save_checkpoint(tmp_path / "student.pt", small_student, small_ds.schema, kind="student")
    out = tmp_path / "result.json"
    # Execute
    result = runner.invoke(app, ["simulate", "--dataset", "synthetic", *OPTIONS, "--method", "fedpa",
                                     "--rounds", "2", "--fraction", "0.5", "--local-epochs", "1", "--seed", "0",
                                     "--student", str(ckpt), "--wire-dtype", "int8", "--features", "base",
                                     "--out", str(out)])
    # Assert
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    for key in ("method", "dataset", "rounds", "best_round", "test", "val", "seconds_per_round",
                "upload_bytes_per_client_round", "download_bytes_per_client_round", "curve"):
        assert key in data, key
    assert set(data["test"]) >= {"auc", "gauc", "logloss", "precision"}
    assert data["method"] == "fedpa" and data["rounds"] == 2 and len(data["curve"]) == 3
    assert data["curve"][1]["clients"] == round(0.5 * data["info"]["clients"])
    assert 0 < data["upload_bytes_per_client_round"] < data["download_bytes_per_client_round"]


def test_simulate_refit_reports_the_refit_test_and_the_train_only_one(tmp_path, small_ds, small_student):
    ckpt = save_checkpoint(tmp_path / "student.pt", small_student, small_ds.schema, kind="student")
    out = tmp_path / "result.json"
    result = runner.invoke(app, ["simulate", "--dataset", "synthetic", *OPTIONS, "--method", "fedpa", "--lr", "2.0",
                                 "--rounds", "3", "--student", str(ckpt), "--features", "base", "--refit",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    refit = data["info"]["refit"]
    assert refit["rounds"] == data["best_round"] > 0
    # the reported test is the refit one; the curve keeps the train-only test of the picked round
    assert refit["test_without_refit"] == data["curve"][data["best_round"]]["test"] != data["test"]


def test_simulate_refuses_a_student_of_other_features(tmp_path, small_ds, small_student):
    ckpt = save_checkpoint(tmp_path / "student.pt", small_student, small_ds.schema, kind="student")
    result = runner.invoke(app, ["simulate", "--dataset", "synthetic", *OPTIONS, "--rounds", "1",
                                 "--student", str(ckpt), "--out", str(tmp_path / "r.json")])  # default: full
    assert result.exit_code != 0
    assert "--features" in result.output
    assert not (tmp_path / "r.json").exists()


def test_simulate_refuses_an_unknown_method(tmp_path):
    result = runner.invoke(app, ["simulate", "--method", "nope", "--out", str(tmp_path / "r.json")])
    assert result.exit_code != 0
    assert "nope" in str(result.exception) + result.output


def test_experiments_writes_table_json_and_figure(tmp_path, small_ds, small_student):
    # Prepare: the cached student the command looks for
    save_checkpoint(tmp_path / "students" / "synthetic-seed0-base-student.pt", small_student, small_ds.schema,
                    kind="student")
    # Execute
    result = runner.invoke(app, ["experiments", "--dataset", "synthetic", *OPTIONS, "--seeds", "1",
                                     "--rounds", "2", "--methods", "fm-only,user-ctr,fedpa", "--no-tune",
                                     "--features", "base", "--out-dir", str(tmp_path)])
    # Assert
    assert result.exit_code == 0, result.output
    table = (tmp_path / "synthetic-table.md").read_text()
    assert "| fedpa |" in table and "| fm-only |" in table and "95 % CI" in table
    fedpa_row = next(line for line in table.splitlines() if line.startswith("| fedpa |"))
    assert fedpa_row.split("|")[4].strip().startswith("[")  # the CI column is filled
    data = json.loads((tmp_path / "synthetic-results.json").read_text())
    assert set(data["summary"]) == {"fm-only", "user-ctr", "fedpa"}
    assert (tmp_path / "synthetic-gauc.png").read_bytes()[:4] == b"\x89PNG"

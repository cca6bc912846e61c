"""``fedpa data stats`` via the typer sub-app."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from fedpa.data import dataset_stats, load_dataset
from fedpa.data.cli import data_app, parse_dataset_options


def test_stats_prints_every_split_and_report() -> None:
    result = CliRunner().invoke(data_app, ["stats", "--dataset", "synthetic", "--seed", "1"])
    assert result.exit_code == 0, result.output
    ds = load_dataset("synthetic", seed=1)
    for row in dataset_stats(ds):
        assert row["split"] in result.output
        assert f"{row['interactions']:,}" in result.output
    assert "private_users_dropped_too_few" in result.output


def test_stats_reports_errors_without_traceback(tmp_path) -> None:
    result = CliRunner().invoke(data_app, ["stats", "--dataset", "csv", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "interactions.csv: file not found" in result.output


def test_dataset_options_are_typed_like_json_and_bad_pairs_are_refused() -> None:
    options = parse_dataset_options(["n_users=200", "drift=1.5", "flag=true", "name=kuai rand", "empty="])
    assert options == {"n_users": 200, "drift": 1.5, "flag": True, "name": "kuai rand", "empty": ""}
    assert parse_dataset_options(None) == {}
    with pytest.raises(typer.BadParameter, match="KEY=VALUE"):
        parse_dataset_options(["n_users"])
    with pytest.raises(typer.BadParameter, match="KEY=VALUE"):
        parse_dataset_options(["=3"])

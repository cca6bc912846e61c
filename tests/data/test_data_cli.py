"""``fedpa data stats`` via the typer sub-app."""

from __future__ import annotations

from typer.testing import CliRunner

from fedpa.data import dataset_stats, load_dataset
from fedpa.data.cli import data_app


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

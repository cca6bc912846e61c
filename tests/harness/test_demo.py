"""``fedpa demo`` end to end (small), its PostgreSQL path, and its failure path."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from harness.demo import DemoConfig, DemoReport, demo_app, format_report

torch.set_num_threads(1)
runner = CliRunner()


def test_demo_runs_every_stage_and_reports(tmp_path):
    out = tmp_path / "demo"

    result = runner.invoke(demo_app, ["--out", str(out), "--max-users", "160", "--train-epochs", "8",
                                      "--rounds", "2", "--devices", "24"])

    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert set(report["seconds"]) >= {"data", "pre-train teacher", "distil student", "export bundle",
                                      "start aggregator", "publish", "shut down"}
    assert report["devices"] == 24 and report["failed_rounds"] == 0 and len(report["rounds"]) == 2
    assert report["database"] == "sqlite" and report["bytes_up"] > 0
    assert 0 < report["epsilon"] <= 8.0 + 1e-6  # the default LDP budget holds
    # round 0 through the exported program is the distilled student (residual gate starts at B = 0); "before"
    # covers the 24 devices' users and fm_only every private user, so they agree only roughly (the exact
    # equality over the same users is tests/edge/test_edge_e2e.py's)
    assert report["before"]["gauc"] == pytest.approx(report["fm_only"]["gauc"], abs=0.05)
    # the full model by default: its item table was computed and published beside the bundle
    assert report["input_kinds"] == ["item_stats", "item_code", "history"]
    assert report["item_table"]["table_version"] == 1 and report["item_table"]["items"] > 0
    assert (out / "rounds.png").stat().st_size > 1000
    assert "after adaptation" in result.output and "wall time" in result.output
    assert (out / "aggregator.log").exists()


def test_demo_reports_a_bad_dataset_as_one_line(tmp_path):
    result = runner.invoke(demo_app, ["--out", str(tmp_path), "--dataset", "kuaisar-r",
                                      "--data-dir", str(tmp_path / "missing")])
    assert result.exit_code == 1
    assert "error:" in result.output and "missing" in result.output


def test_format_report_without_ldp():
    report = DemoReport(config={**DemoConfig().__dict__, "delta": 1e-5}, seconds={"data": 1.0},
                        fm_only={"gauc": 0.6, "auc": 0.6}, before={"gauc": 0.6, "auc": 0.6},
                        after={"gauc": 0.65, "auc": 0.66}, best_round=3, devices=10, rounds=[{}, {}, {}],
                        plot="runs/demo/rounds.png")
    text = format_report(report)
    assert "LDP off" in text and "GAUC 0.6500" in text and "total 1.0s" in text


@pytest.mark.postgres
def test_demo_on_postgresql_uses_and_drops_its_own_database(tmp_path, monkeypatch):
    """Only the database this run created is looked at: other users of the server (another demo, another
    test session) may create and drop ``fedpa_demo_*`` databases meanwhile."""
    import contextlib

    import psycopg
    from sqlalchemy.engine import make_url

    from harness import server_process

    server = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    created: list[tuple[str, bool]] = []  # (database, existed while the demo ran)
    original = server_process.temporary_postgres_database

    def exists(name: str) -> bool:
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", application_name="fedpa-tests") as conn:
            return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None

    @contextlib.contextmanager
    def spy(*args, **kwargs):
        with original(*args, **kwargs) as url:
            name = make_url(url).database
            created.append((name, exists(name)))
            yield url

    monkeypatch.setattr(server_process, "temporary_postgres_database", spy)
    result = runner.invoke(demo_app, ["--out", str(tmp_path), "--postgres", server, "--max-users", "120",
                                      "--train-epochs", "5", "--rounds", "1", "--devices", "12"])

    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["database"] == "postgresql" and report["failed_rounds"] == 0
    [(name, existed)] = created
    assert name.startswith("fedpa_demo_") and existed  # a fresh database of its own for the run…
    assert not exists(name)  # …dropped afterwards

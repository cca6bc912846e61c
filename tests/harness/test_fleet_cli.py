"""``fedpa-edge fleet`` (:mod:`harness.edge_cli`) through typer's runner, against the session's real aggregator."""

from __future__ import annotations

import json
import re

from typer.testing import CliRunner

from harness.edge_cli import app

runner = CliRunner()


def test_fleet_command_runs_rounds_and_writes_report_and_plot(world, sqlite_server, tmp_path):
    world.publish(sqlite_server, "cli-fleet", {"round_size": 12, "min_reporters": 1, "enforce_privacy": False})
    out = tmp_path / "fleet.json"

    result = runner.invoke(app, [
        "fleet", "--server", sqlite_server.url, "--model-id", "cli-fleet", "--option", "n_users=200",
        "--option", "drift=3.0", "--devices", "12", "--rounds", "2", "--root", str(tmp_path / "devices"),
        "--admin-token", sqlite_server.admin_token, "--no-ldp", "--allow-unsigned", "--json", str(out),
        "--plot", str(tmp_path / "p.png")])

    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["devices"] == 12 and report["failed_rounds"] == 0
    assert [r["state_version"] for r in report["rounds"]] == [1, 2]
    assert (tmp_path / "p.png").stat().st_size > 1000


def test_fleet_command_refuses_a_dataset_encoded_unlike_the_bundle(world, sqlite_server, tmp_path):
    world.publish(sqlite_server, "cli-mismatch", {"round_size": 2, "min_reporters": 1, "enforce_privacy": False})
    result = runner.invoke(app, ["fleet", "--server", sqlite_server.url, "--model-id", "cli-mismatch",
                                 "--option", "n_users=50", "--devices", "2", "--rounds", "1", "--no-ldp",
                                 "--allow-unsigned", "--root", str(tmp_path)])
    assert result.exit_code == 1
    assert "feature schema differs" in result.output


def test_a_second_fleet_run_resumes_the_devices_and_their_spent_budget(world, sqlite_server, tmp_path):
    """Issue 17: a rerun must not hand the same users a fresh ε budget; --fresh says it starts anew."""
    from fedpa.manifest import PrivacySettings
    from fedpa.privacy import PrivacyConfig, epsilon_after

    world.publish(sqlite_server, "cli-resume", {"round_size": 3, "min_reporters": 1, "enforce_privacy": True},
                  privacy=PrivacySettings(clip_norm=1.0, noise_multiplier=2.0, rounds=1))
    accountant = PrivacyConfig(clip_norm=1.0, noise_multiplier=2.0)
    budget = (epsilon_after(1, accountant) + epsilon_after(2, accountant)) / 2  # one upload per device
    args = ["fleet", "--server", sqlite_server.url, "--model-id", "cli-resume", "--option", "n_users=200",
            "--option", "drift=3.0", "--devices", "3", "--rounds", "1", "--root", str(tmp_path / "devices"),
            "--admin-token", sqlite_server.admin_token, "--clip-norm", "1", "--noise-multiplier", "2",
            "--epsilon", f"{budget}", "--allow-unsigned"]

    first = runner.invoke(app, [*args, "--json", str(tmp_path / "first.json")])
    second = runner.invoke(app, [*args, "--json", str(tmp_path / "second.json")])
    fresh = runner.invoke(app, [*args, "--fresh", "--json", str(tmp_path / "fresh.json")])

    assert first.exit_code == second.exit_code == fresh.exit_code == 0, first.output + second.output
    # human-readable lines may be coloured (FORCE_COLOR) and wrap at 80 columns: compare the plain words
    said = [" ".join(re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", r.stdout).split()) for r in (first, second, fresh)]
    assert "starting new devices" in said[0]
    assert "resuming the 3 device stores" in said[1] and "3 device-rounds refused" in said[1]
    assert json.loads((tmp_path / "second.json").read_text())["budget_refusals"] == 3
    assert json.loads((tmp_path / "second.json").read_text())["resumed"] == 3
    assert "--fresh: 3 earlier stores deleted" in said[2]
    assert json.loads((tmp_path / "fresh.json").read_text())["rounds"][0]["statuses"] == {"accepted": 3}

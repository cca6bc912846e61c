"""Common mistakes across the four command lines: one ``error:`` line with the fix, never a traceback.

The table holds the mistakes a new user made (issue 17) and variations of the ``--help`` examples.
Each runs in-process through the same click entry point as the console scripts (``CliRunner``
drives ``main``), so it is fast; two subprocess checks at the end run the real scripts, where
colour can be forced and native libraries write to the terminal.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from aggregator.cli import app as aggregator_app
from export.cli import app as export_app
from harness.cli import app as fedpa_app
from harness.edge_cli import app as edge_app  # the installed fedpa-edge: edge.cli's commands plus the fleet

APPS = {"fedpa": fedpa_app, "fedpa-export": export_app, "fedpa-edge": edge_app, "fedpa-aggregator": aggregator_app}
NOWHERE = "http://127.0.0.1:9"  # nothing listens on the discard port

# (program, arguments with {tmp} for a scratch folder, a fragment of the one error line: what to fix)
MISTAKES: list[tuple[str, list[str], str]] = [
    ("fedpa", ["simulate", "--option", "n_users=abc", "--rounds", "1"], "n_users must be an integer"),
    ("fedpa", ["simulate", "--option", "n_users", "--rounds", "1"], "KEY=VALUE"),
    ("fedpa", ["simulate", "--option", "colour=blue"], "unknown option 'colour'"),
    ("fedpa", ["simulate", "--rounds", "x"], "'--rounds'"),
    ("fedpa", ["simulate", "--method", "fedprox"], "unknown method 'fedprox'"),
    ("fedpa", ["pretrain", "--dataset", "movielens"], "unknown dataset 'movielens'"),
    ("fedpa", ["distill", "--teacher", "{tmp}/runs/teacher.pt"], "checkpoint not found"),
    ("fedpa", ["data", "stats", "--dataset", "kuaisar-r", "--data-dir", "{tmp}/nothing"],
     "data directory not found"),
    ("fedpa", ["demo", "--rounds", "0"], "'--rounds'"),
    ("fedpa", ["demo", "--option", "n_users=100"], "No such option"),
    ("fedpa", ["experiments", "--option", "drift=-1"], "drift must be a number ≥ 0"),
    ("fedpa", ["simulat"], "No such command"),
    ("fedpa-export", ["build", "--out", "{tmp}/b", "--teacher", "{tmp}/t.pt", "--dataset", "synthetic",
                      "--option", "n_users=abc"], "n_users must be an integer"),
    ("fedpa-export", ["build", "--out", "{tmp}/b", "--student", "{tmp}/runs/student.pt"], "checkpoint not found"),
    ("fedpa-export", ["build", "--out", "{tmp}/b"], "nothing to export"),
    ("fedpa-export", ["build", "--out", "{tmp}/b", "--dataset", "synthetic", "--clip-norm", "-1"], "clip_norm"),
    ("fedpa-export", ["verify", "{tmp}/runs/bundle"], "{tmp}/runs/bundle"),
    ("fedpa-export", ["inspect", "{tmp}/runs/bundle", "--json"], "{tmp}/runs/bundle"),
    ("fedpa-edge", ["fleet", "--server", NOWHERE, "--model-id", "fedpa", "--option", "n_users=abc"],
     "n_users must be an integer"),
    ("fedpa-edge", ["fleet", "--server", NOWHERE, "--model-id", "fedpa", "--rounds", "0"], "'--rounds'"),
    ("fedpa-edge", ["fleet", "--server", NOWHERE], "Missing option '--model-id'"),
    ("fedpa-edge", ["run", "--server", NOWHERE, "--model-id", "fedpa", "--interactions", "{tmp}/me.csv"],
     "does not exist"),
    ("fedpa-edge", ["recommend", "--store", "{tmp}/edge-store", "--candidates", "{tmp}/items.csv"],
     "does not exist"),
    ("fedpa-aggregator", ["admin", "publish", "{tmp}", "--config", "{round_size: 201}"],
     """e.g. --config '{"round_size": 201}'"""),
    ("fedpa-aggregator", ["admin", "publish", "{tmp}", "--config", "[201]"], "must be a JSON object"),
    ("fedpa-aggregator", ["admin", "publish", "{tmp}/runs/bundle"], "does not exist"),
    ("fedpa-aggregator", ["admin", "status", "--database-url", "sqlite:///{tmp}/elsewhere/fedpa.db"],
     "no aggregator database at"),
    ("fedpa-aggregator", ["admin", "status", "--database-url", "postgres//wrong"], "not a database URL"),
    ("fedpa-aggregator", ["serve", "--port", "http"], "'--port'"),
    ("fedpa-aggregator", ["admin", "register-device"], "Missing argument 'model_id'"),
]


@pytest.mark.parametrize(("program", "args", "fix"), MISTAKES, ids=[f"{p} {' '.join(a)}" for p, a, _ in MISTAKES])
def test_a_mistake_gives_one_error_line_with_the_fix(program, args, fix, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FEDPA_DATABASE_URL", "unset")  # --database-url writes the variable: restored afterwards
    monkeypatch.delenv("FEDPA_DATABASE_URL")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]

    result = CliRunner().invoke(APPS[program], args)

    # Human output (progress lines, a spinner) may be coloured when colour is forced: judge the text.
    shown = re.sub(r"\x1b\][^\x1b]*\x1b\\|\x1b\[[0-9;?]*[A-Za-z]", "", result.stderr).replace("\r", "\n")
    errors = [line for line in shown.splitlines() if line.strip()]
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    assert result.exc_info is None or result.exc_info[0] is SystemExit, result.exc_info
    assert errors and errors[-1].startswith("error: ") and "unexpected" not in errors[-1], result.output
    assert sum(line.startswith("error:") for line in errors) == 1, result.output
    assert fix.replace("{tmp}", str(tmp_path)) in errors[-1]
    assert list(tmp_path.iterdir()) == [], "a refused command left files behind"


def test_table_covers_every_cli_and_the_issues_mistakes():
    assert len(MISTAKES) >= 18
    assert {program for program, _, _ in MISTAKES} == set(APPS)


def _script(name: str) -> list[str]:
    module = {"fedpa": "harness.cli", "fedpa-export": "export.cli", "fedpa-edge": "harness.edge_cli",
              "fedpa-aggregator": "aggregator.cli"}[name]
    return [sys.executable, "-c", f"import sys; from {module} import app; sys.argv[0] = {name!r}; app()"]


def test_forced_colour_never_reaches_an_error_line_of_the_real_script(tmp_path):
    """Run as a console script with FORCE_COLOR=1: the ``error:`` line stays plain text on stderr."""
    env = {**os.environ, "FORCE_COLOR": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    script = "import sys; from aggregator.cli import app; sys.argv[0] = 'fedpa-aggregator'; app()"

    bad = subprocess.run([sys.executable, "-c", script, "admin", "publish", str(tmp_path), "--config", "{x}"],
                         env=env, capture_output=True, text=True, timeout=120)

    assert bad.returncode == 1
    assert bad.stdout == "" and bad.stderr.startswith("error: --config '{x}' is not JSON"), bad.stderr
    assert "\x1b[" not in bad.stderr and len(bad.stderr.splitlines()) == 1

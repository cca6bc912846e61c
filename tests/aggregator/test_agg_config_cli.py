"""Settings (env prefix, production refusals), the CLI, migrations, and "no torch on the server"."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from agg_helpers import MODEL_ID, make_update, write_bundle
from pydantic import ValidationError
from sqlalchemy import inspect
from typer.testing import CliRunner

from aggregator.cli import app
from aggregator.core.config import Settings
from aggregator.db import make_engine, run_migrations
from fedpa.errors import ConfigError


def test_settings_read_the_fedpa_environment(monkeypatch):
    monkeypatch.setenv("FEDPA_DATABASE_URL", "sqlite:///x.db")
    monkeypatch.setenv("FEDPA_MAX_UPLOAD_BYTES", "4096")
    monkeypatch.setenv("FEDPA_DEFAULT_ROUND__MODE", "async")
    monkeypatch.setenv("FEDPA_DEFAULT_ROUND__BUFFER_SIZE", "7")

    settings = Settings()

    assert (settings.database_url, settings.max_upload_bytes) == ("sqlite:///x.db", 4096)
    assert (settings.default_round.mode, settings.default_round.buffer_size) == ("async", 7)


@pytest.mark.parametrize(("env", "match"), [
    ({}, "FEDPA_ADMIN_TOKEN of at least 32"),
    ({"FEDPA_ADMIN_TOKEN": "short"}, "got 5"),
    ({"FEDPA_ADMIN_TOKEN": "k" * 40}, "explicit FEDPA_DATABASE_URL"),
])
def test_production_refuses_unsafe_defaults(monkeypatch, env, match):
    monkeypatch.setenv("FEDPA_ENV", "production")
    for key, value in env.items():
        monkeypatch.setenv(key, value)

    with pytest.raises((ConfigError, ValidationError), match=match):
        Settings()


def test_production_accepts_safe_settings(monkeypatch):
    monkeypatch.setenv("FEDPA_ENV", "production")
    monkeypatch.setenv("FEDPA_ADMIN_TOKEN", "k" * 40)
    monkeypatch.setenv("FEDPA_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    monkeypatch.setenv("FEDPA_ENROLLMENT", "enrollment-key")

    assert Settings().env == "production"


def test_no_torch_anywhere_under_aggregator():
    code = (
        "import pkgutil, importlib, sys, aggregator\n"
        "names = [m.name for m in pkgutil.walk_packages(aggregator.__path__, 'aggregator.')"
        " if '.alembic' not in m.name]\n"
        "[importlib.import_module(n) for n in names]\n"
        "import aggregator.main\n"
        "print(len(names), 'torch' in sys.modules, 'executorch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()

    assert int(out[0]) >= 20 and out[1:] == ["False", "False"]


def test_migrations_match_the_models(db_url):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from aggregator.models import Base

    engine = make_engine(db_url)
    run_migrations(engine)
    run_migrations(engine)  # idempotent
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        tables = set(inspect(conn).get_table_names())
    engine.dispose()

    assert diff == []
    assert {"models", "bundle_files", "bank_versions", "devices", "updates", "aggregations"} <= tables


def test_cli_admin_commands(sqlite_url, tmp_path):
    runner = CliRunner()
    write_bundle(tmp_path / "b")
    db = ["--database-url", sqlite_url]

    migrated = runner.invoke(app, ["migrate", *db])
    token = runner.invoke(app, ["admin", "create-token"])
    published = runner.invoke(app, ["admin", "publish", str(tmp_path / "b"), "--config", '{"round_size": 2}', *db])
    device = runner.invoke(app, ["admin", "register-device", MODEL_ID, *db])
    key = runner.invoke(app, ["admin", "issue-enrollment-key", MODEL_ID, "--max-devices", "5", *db])
    status = runner.invoke(app, ["admin", "status", *db])
    revoked = runner.invoke(app, ["admin", "revoke-device", json.loads(device.stdout)["device_id"], *db])
    nothing = runner.invoke(app, ["admin", "aggregate", MODEL_ID, *db])
    unknown = runner.invoke(app, ["admin", "register-device", "nope", *db])
    bad_bundle = runner.invoke(app, ["admin", "publish", str(tmp_path), *db])

    assert migrated.exit_code == 0, migrated.output
    assert len(token.output.strip()) >= 43
    assert published.exit_code == 0 and json.loads(published.stdout)["config"]["round_size"] == 2
    assert json.loads(device.stdout)["token"].startswith("fpd_") and json.loads(device.stdout)["expires_at"]
    assert json.loads(key.stdout)["key"].startswith("fpe_") and json.loads(key.stdout)["max_devices"] == 5
    assert [s["model_id"] for s in json.loads(status.stdout)] == [MODEL_ID]
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    assert nothing.exit_code == 0 and "nothing pending" in nothing.output
    assert unknown.exit_code == 1 and "unknown model 'nope'" in unknown.output
    assert bad_bundle.exit_code == 1 and "no manifest.json" in bad_bundle.output


def test_cli_aggregate_closes_a_round_stored_by_the_server(sqlite_url, tmp_path):
    from agg_helpers import make_settings
    from fastapi.testclient import TestClient

    from aggregator.main import create_app

    write_bundle(tmp_path / "b")
    runner = CliRunner()
    db = ["--database-url", sqlite_url]
    runner.invoke(app, ["migrate", *db])
    runner.invoke(app, ["admin", "publish", str(tmp_path / "b"), *db])
    token = json.loads(runner.invoke(app, ["admin", "register-device", MODEL_ID, *db]).stdout)["token"]
    with TestClient(create_app(make_settings(sqlite_url, scheduler_enabled=False))) as client:
        body, _ = make_update({"age": 0, "region": 0}, seed=1)
        assert client.post(f"/v1/models/{MODEL_ID}/updates", content=body,
                           headers={"Authorization": f"Bearer {token}"}).status_code == 202

    closed = runner.invoke(app, ["admin", "aggregate", MODEL_ID, *db])

    assert closed.exit_code == 0, closed.output
    assert "closed round 0 → state version 1" in closed.output

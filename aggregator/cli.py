"""``fedpa-aggregator``: serve, migrate, and admin commands that act directly on the database.

Thin: flags become ``FEDPA_*`` settings, logic lives in ``aggregator.services``; admin commands
need no running server (they use the same database the server uses).

Usage: ``fedpa-aggregator serve --workers 2 --database-url postgresql+psycopg://postgres@127.0.0.1/test``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from aggregator.core.config import Settings
from fedpa.cli_common import make_app, setup_logging
from fedpa.errors import ConfigError

if TYPE_CHECKING:  # the runtime pulls in SQLAlchemy & co.; imported lazily so --help stays fast
    from aggregator.services.runtime import Runtime

__all__ = ["app"]

app = make_app(help="FedPA aggregator server and admin tools.", no_args_is_help=True)
admin = make_app(help="Admin commands, run directly against the database.", no_args_is_help=True)
app.add_typer(admin, name="admin")


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show libraries' warnings and "
                                                "tracebacks.")] = False) -> None:
    setup_logging(verbose)

DbUrl = Annotated[str | None, typer.Option("--database-url", help="overrides FEDPA_DATABASE_URL")]


def _settings(database_url: str | None, *, create: bool = False) -> Settings:
    """Settings with ``--database-url`` applied; ``create`` makes a SQLite database's folder (serve, migrate)."""
    if database_url:
        os.environ["FEDPA_DATABASE_URL"] = database_url
    settings = Settings()
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        make_url(settings.database_url)
    except ArgumentError:
        raise ConfigError(f"{settings.database_url!r} is not a database URL; e.g. sqlite:////var/lib/fedpa/aggregator.db"
                          " or postgresql+psycopg://user@127.0.0.1:5432/fedpa") from None
    path = _sqlite_path(settings.database_url)
    if create and path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    return settings


def _sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None for PostgreSQL or an in-memory database)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database).expanduser().resolve()


def _runtime(database_url: str | None) -> Runtime:
    """The runtime over an existing database, named on stderr; never creates one (serve/migrate do).

    Why: an admin command run from the wrong folder or with a mistyped URL used to create an empty
    database and report "no models" instead of saying it was looking in the wrong place.
    """
    from sqlalchemy import inspect
    from sqlalchemy.engine import make_url

    from aggregator.services.runtime import Runtime

    settings = _settings(database_url)
    shown = make_url(settings.database_url).render_as_string(hide_password=True)
    typer.echo(f"database: {shown}", err=True)
    fix = ("start the server (`fedpa-aggregator serve`) or run `fedpa-aggregator migrate` first, or point at "
           "the server's database with --database-url / FEDPA_DATABASE_URL")
    path = _sqlite_path(settings.database_url)
    if path is not None and not path.is_file():
        raise ConfigError(f"no aggregator database at {path}: {fix}")
    runtime = Runtime.build(settings)
    if not inspect(runtime.db.engine).has_table("alembic_version"):
        runtime.db.dispose()
        raise ConfigError(f"{shown} holds no aggregator tables: {fix}")
    runtime.db.migrate()
    return runtime


def _round_config(text: str | None) -> dict[str, object] | None:
    """``--config`` text → round settings, refusing non-JSON with the shape it needs."""
    if text is None:
        return None
    example = """--config '{"round_size": 201}'"""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--config {text!r} is not JSON ({exc.msg} at column {exc.colno}); quote keys and "
                          f"strings, e.g. {example}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"--config must be a JSON object, got {text!r}; e.g. {example}")
    return value


@app.command()
def serve(host: Annotated[str, typer.Option(help="bind address")] = "127.0.0.1",
          port: Annotated[int, typer.Option(help="TCP port")] = 8000,
          workers: Annotated[int, typer.Option(min=1, help="uvicorn worker processes")] = 1,
          database_url: DbUrl = None,
          access_log: Annotated[bool, typer.Option(help="log every request")] = False,
          log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
          aggregation_process: Annotated[bool, typer.Option(
              "--aggregation-process/--aggregation-in-workers",
              help="aggregate in one separate, niced process (default), or inside every serving worker "
                   "(one process less; a ~0.5 s aggregation then holds that worker's interpreter and "
                   "its uploads wait)")] = True) -> None:
    """Run the HTTP server (uvicorn, uvloop + httptools); migrates the database first."""
    import uvicorn

    from aggregator.db import Database

    settings = _settings(database_url, create=True)  # validates (refuses unsafe production settings) before forking
    db = Database(settings)
    db.migrate()
    db.dispose()
    metrics_dir = None
    if (workers > 1 or aggregation_process) and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        metrics_dir = tempfile.mkdtemp(prefix="fedpa-metrics-")  # /metrics sums every process
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    os.environ["FEDPA_AUTO_MIGRATE"] = "false"  # done above, once
    aggregator = None
    if aggregation_process:
        os.environ["FEDPA_SCHEDULER_ENABLED"] = "false"  # the workers only serve
        aggregator = subprocess.Popen([sys.executable, "-m", "aggregator.cli", "aggregate-loop",
                                       "--parent-pid", str(os.getpid())])
    try:
        uvicorn.run("aggregator.main:create_app", factory=True, host=host, port=port, workers=workers,
                    loop="uvloop", http="httptools", access_log=access_log, log_level=log_level, backlog=4096)
    finally:
        if aggregator is not None:
            aggregator.terminate()
            try:
                aggregator.wait(15)
            except subprocess.TimeoutExpired:
                aggregator.kill()
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


@app.command("aggregate-loop")
def aggregate_loop(database_url: DbUrl = None,
                   nice: Annotated[int, typer.Option(
                       min=0, max=19, help="CPU niceness added to this process: aggregation is background "
                       "work, uploads waiting on the same cores are not")] = 10,
                   parent_pid: Annotated[int | None, typer.Option(
                       help="stop when this process is no longer our parent (serve passes its own pid, so "
                            "a killed server leaves no aggregator behind)")] = None) -> None:
    """Close due rounds (size reached, deadline passed) until stopped; run beside servers started
    with FEDPA_SCHEDULER_ENABLED=false (`serve` starts one itself unless --aggregation-in-workers)."""
    import threading

    from aggregator.services.scheduler import run_aggregation_loop

    os.nice(nice)
    runtime = _runtime(database_url)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        run_aggregation_loop(runtime.close_due_rounds, poll_s=max(runtime.settings.scheduler_interval_s, 0.05),
                             stop=stop, parent_pid=parent_pid)
    finally:
        runtime.db.dispose()


@app.command()
def migrate(database_url: DbUrl = None) -> None:
    """Create or upgrade the database schema (alembic upgrade head)."""
    from sqlalchemy.engine import make_url

    from aggregator.db import Database

    settings = _settings(database_url, create=True)
    db = Database(settings)
    db.migrate()
    db.dispose()
    typer.echo(f"database at head: {make_url(settings.database_url).render_as_string(hide_password=True)}")


@admin.command("create-token")
def create_token() -> None:
    """Print a fresh random admin token to put in FEDPA_ADMIN_TOKEN."""
    from aggregator.services.devices import new_admin_token

    print(new_admin_token())


@admin.command("register-device")
def register(model_id: str, database_url: DbUrl = None) -> None:
    """Register a device for MODEL_ID and print its id and token as JSON (the token is shown once)."""
    from aggregator.services.devices import register_device

    runtime = _runtime(database_url)
    created = register_device(runtime.db, model_id, burst=runtime.settings.rate_limit_burst,
                              token_ttl_s=runtime.settings.token_ttl_s)
    print(created.model_dump_json())


@admin.command("issue-enrollment-key")
def issue_key(model_id: str,
              max_devices: Annotated[int, typer.Option(min=1, help="devices the key may register")] = 100,
              ttl_s: Annotated[float, typer.Option(min=1, help="seconds until the key expires")] = 7 * 86400.0,
              database_url: DbUrl = None) -> None:
    """Issue an enrollment key for MODEL_ID (FEDPA_ENROLLMENT=enrollment-key) and print it as JSON (shown once)."""
    from aggregator.services.devices import issue_enrollment_key

    runtime = _runtime(database_url)
    print(issue_enrollment_key(runtime.db, model_id, max_devices=max_devices, ttl_s=ttl_s,
                               burst=runtime.settings.enrollment_burst).model_dump_json())


@admin.command("revoke-device")
def revoke(device_id: str, database_url: DbUrl = None) -> None:
    """Revoke a device's token (workers honour it within FEDPA_TOKEN_CACHE_S seconds)."""
    from aggregator.services.devices import revoke_device

    revoke_device(_runtime(database_url).db, device_id)
    typer.echo(f"revoked {device_id}")


@admin.command()
def publish(bundle_dir: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="bundle directory")],
            config: Annotated[str | None, typer.Option(help="round settings as JSON, e.g. '{\"round_size\": 50}'")]
            = None,
            database_url: DbUrl = None) -> None:
    """Verify a bundle and publish it (or a newer version of its model)."""
    from aggregator.services.publishing import publish_bundle

    overrides = _round_config(config)  # the input first: a typo changes nothing
    runtime = _runtime(database_url)
    result = publish_bundle(runtime.db, bundle_dir, config=overrides, defaults=runtime.settings.default_round)
    print(result.model_dump_json())


@admin.command()
def status(model_id: Annotated[str | None, typer.Argument(help="one model (default: all)")] = None,
           database_url: DbUrl = None) -> None:
    """Print the status of one or every model as JSON."""
    from aggregator.services.status import list_models, model_status

    runtime = _runtime(database_url)
    ids = [model_id] if model_id else list_models(runtime.db)
    print(json.dumps([model_status(runtime.db, runtime.catalog, m).model_dump() for m in ids], indent=2))


@admin.command()
def aggregate(model_id: str, database_url: DbUrl = None) -> None:
    """Close MODEL_ID's open round now (safe while servers run: same locks)."""
    from aggregator.services.status import model_status

    runtime = _runtime(database_url)
    with runtime.db.sessions() as session:
        info = runtime.catalog.current(session, model_id)
    result = runtime.close_round(info.pk, trigger="admin", force=True)
    typer.echo(f"closed round {result.round} → state version {result.state_version}" if result
               else "nothing pending", err=True)
    print(model_status(runtime.db, runtime.catalog, model_id).model_dump_json())


if __name__ == "__main__":  # pragma: no cover
    app()

"""Fixtures: a database per test (SQLite file, or a fresh PostgreSQL schema), bundles, apps.

PostgreSQL schemas live in a database of this test session's own: other users of the shared
server (another session's tests, a running aggregator, a demo) then never see our connections in
``pg_stat_activity`` filtered by database, nor contend for our advisory locks (database-wide).
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest
from fastapi.testclient import TestClient

# The suite runs with --import-mode=importlib (no test dir on sys.path): make our helper
# module (uniquely named, so it cannot shadow another suite's) importable by the test files.
sys.path.insert(0, str(Path(__file__).parent))
from agg_helpers import make_settings, write_bundle

from aggregator.main import create_app

PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"
TEST_CONNECTION = "fedpa-tests"  # application_name of the tests' own connections, never an aggregator's


def _pg_available() -> bool:
    try:
        with psycopg.connect(PG_DSN, connect_timeout=2, application_name=TEST_CONNECTION):
            return True
    except psycopg.OperationalError:
        return False


@pytest.fixture(scope="session")
def pg_available() -> bool:
    return _pg_available()


@pytest.fixture(scope="session")
def pg_database(pg_available: bool) -> Iterator[str]:
    """A libpq DSN of a database created for this test session on the shared server; dropped at the end."""
    if not pg_available:
        pytest.skip("PostgreSQL not reachable on 127.0.0.1:5432")
    name = f"fedpa_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_DSN, autocommit=True, application_name=TEST_CONNECTION) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(PG_DSN, autocommit=True, application_name=TEST_CONNECTION) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url(pg_database: str) -> Iterator[str]:
    """A PostgreSQL URL (this session's database) whose search_path is a brand-new schema, dropped afterwards."""
    schema = f"agg_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_database, autocommit=True, application_name=TEST_CONNECTION) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    yield f"{pg_database.replace('postgresql://', 'postgresql+psycopg://')}?options=-csearch_path%3D{schema}"
    with psycopg.connect(pg_database, autocommit=True, application_name=TEST_CONNECTION) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'agg.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Runs the test once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def bundle(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path / "bundle"
    return root, write_bundle(root)


AppFactory = Callable[..., TestClient]


@pytest.fixture
def app_client(db_url: str) -> Iterator[AppFactory]:
    """Factory of TestClients (lifespan started: migrations, scheduler) over this test's database."""
    clients: list[TestClient] = []

    def factory(**overrides: object) -> TestClient:
        client = TestClient(create_app(make_settings(db_url, **overrides)))
        client.__enter__()
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.__exit__(None, None, None)

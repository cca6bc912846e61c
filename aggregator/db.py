"""Engine, sessions, migrations and the two locks that make aggregation exactly-once.

PostgreSQL (production, several workers) and SQLite (embedded default) behave the same to the
services:

* ``lock_round(session, pk, exclusive=False)`` is taken by a synchronous-mode upload before it
  reads the round and inserts; ``exclusive=True`` by aggregation. On PostgreSQL these are
  transaction-scoped advisory locks, so uploads never block each other while an aggregation waits
  for the in-flight uploads of the round it closes and holds new ones back until it commits; no
  update can slip into a round that is already closed.
* On SQLite every write transaction starts with ``BEGIN IMMEDIATE``, which serialises writers
  outright (the locks are no-ops there).

Usage: ``db = Database(settings); with db.begin() as session: ...``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

from aggregator.core.config import Settings

if TYPE_CHECKING:  # alembic (and mako) load only when migrating: workers start faster
    from alembic.config import Config

__all__ = ["Database", "RawTransaction", "alembic_config", "make_engine", "run_migrations"]

log = logging.getLogger(__name__)

_LOCK_CLASS = 0x46504100  # "FPA\0": namespace of our advisory locks (first key of the pair)
_MIGRATION_LOCK = 0x7FFF  # second key of the migration lock (model pks are small positive ints)
_ALEMBIC_DIR = Path(__file__).with_name("alembic")


def make_engine(url: str, *, pool_size: int = 10, max_overflow: int = 10) -> Engine:
    """An engine with our per-dialect setup (SQLite: WAL, foreign keys, BEGIN IMMEDIATE)."""
    if url.startswith("sqlite"):
        memory = url in ("sqlite://", "sqlite:///:memory:")  # one shared connection (SingletonThreadPool)
        pool_args = {} if memory else {"pool_size": pool_size, "max_overflow": max_overflow}
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **pool_args)

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn, _record) -> None:  # noqa: ANN001
            dbapi_conn.isolation_level = None  # let SQLAlchemy's "begin" hook below issue BEGIN
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")  # durable commit before we answer 202
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn) -> None:  # noqa: ANN001
            conn.exec_driver_sql("BEGIN IMMEDIATE")  # take the write lock up front: no upgrade deadlocks

        return engine
    # No pool_pre_ping: it costs a round trip per checkout on the hot path; a connection broken by a
    # database restart fails one request (5xx, clients retry) and is then replaced by the pool.
    return create_engine(url, pool_size=pool_size, max_overflow=max_overflow)


def alembic_config() -> Config:
    """Alembic config pointing at the packaged migrations (no alembic.ini needed)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_ALEMBIC_DIR))
    return cfg


def run_migrations(engine: Engine) -> None:
    """``alembic upgrade head``, safe when several workers start at once.

    PostgreSQL: a session advisory lock around the upgrade; SQLite: the upgrade runs inside one
    ``BEGIN IMMEDIATE`` transaction, so a second process waits and then finds the schema at head.
    """
    from alembic import command

    cfg = alembic_config()
    postgres = engine.dialect.name == "postgresql"
    with engine.connect() as conn:
        if postgres:
            conn.execute(text("SELECT pg_advisory_lock(:c, :k)"), {"c": _LOCK_CLASS, "k": _MIGRATION_LOCK})
            conn.commit()
        try:
            with conn.begin():
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
        finally:
            if postgres:
                conn.execute(text("SELECT pg_advisory_unlock(:c, :k)"), {"c": _LOCK_CLASS, "k": _MIGRATION_LOCK})
                conn.commit()


@lru_cache(maxsize=256)
def _pyformat(sql: str) -> str:
    """``:name`` placeholders → psycopg's ``%(name)s`` (our hot-path SQL has no ``::`` casts)."""
    return re.sub(r"(?<![:\w]):([A-Za-z_]\w*)", r"%(\1)s", sql.replace("%", "%%"))


class RawTransaction:
    """A DBAPI cursor inside one transaction, for the few hot statements (see ``Database.raw``)."""

    def __init__(self, cursor: object, *, pyformat: bool) -> None:
        self.cursor = cursor
        self._pyformat = pyformat

    def execute(self, sql: str, params: Mapping[str, object] | None = None) -> object:
        """Run ``sql`` written with ``:name`` placeholders; returns the cursor (fetchone, rowcount)."""
        self.cursor.execute(_pyformat(sql) if self._pyformat else sql, params or {})  # type: ignore[attr-defined]
        return self.cursor


class Database:
    """The engine, a session factory and dialect-specific locking; one per app (per worker)."""

    def __init__(self, settings: Settings) -> None:
        self.engine = make_engine(settings.database_url, pool_size=settings.db_pool_size,
                                  max_overflow=settings.db_max_overflow)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.is_postgres = self.engine.dialect.name == "postgresql"

    @contextmanager
    def begin(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on any exception."""
        with self.sessions.begin() as session:
            yield session

    @contextmanager
    def raw(self) -> Iterator[RawTransaction]:
        """One transaction on a pooled DBAPI connection, bypassing SQLAlchemy's statement machinery.

        The upload path runs three tiny statements per request; building and compiling them through
        the ORM cost ~2 ms of CPU per upload, which capped a worker near 400 uploads/s. Everything
        else uses sessions. SQLite gets the same ``BEGIN IMMEDIATE`` as sessions do.
        """
        conn = self.engine.raw_connection()
        try:
            cursor = conn.cursor()
            if not self.is_postgres:
                cursor.execute("BEGIN IMMEDIATE")
            yield RawTransaction(cursor, pyformat=self.is_postgres)
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        finally:
            conn.close()  # back to the pool

    def read_one(self, sql: str, params: Mapping[str, object]) -> tuple | None:
        """First row of one read-only statement (``:name`` placeholders) on a pooled DBAPI connection.

        For hot reads, like ``raw`` for writes: the ORM cost ~1.2 ms of CPU for a one-row lookup.
        Takes no write lock (SQLite) and ends the read transaction psycopg opened.
        """
        conn = self.engine.raw_connection()
        try:
            cursor = conn.cursor()
            cursor.execute(_pyformat(sql) if self.is_postgres else sql, params)
            row = cursor.fetchone()
            conn.rollback()
            return None if row is None else tuple(row)
        finally:
            conn.close()  # back to the pool

    def lock_round(self, session: Session | RawTransaction, model_pk: int, *, exclusive: bool) -> None:
        """Transaction-scoped round lock: shared for sync uploads, exclusive for aggregation."""
        if self.is_postgres:
            fn = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
            sql, params = f"SELECT {fn}(:c, :k)", {"c": _LOCK_CLASS, "k": model_pk}
            if isinstance(session, RawTransaction):
                session.execute(sql, params)
            else:
                session.execute(text(sql), params)

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def migrate(self) -> None:
        run_migrations(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()

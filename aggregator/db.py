"""Engine, sessions, migrations and the two locks that make aggregation exactly-once.

PostgreSQL (production, several workers) and SQLite (embedded default) behave the same to the
services:

* The round lock: a synchronous-mode upload takes it shared (``round_lock(pk, exclusive=False)``,
  a statement of its ``Script``) before it reads the round and inserts; aggregation and publishing
  take it exclusive (``lock_round(session, pk, exclusive=True)``). On PostgreSQL these are
  transaction-scoped advisory locks, so uploads never block each other while an aggregation waits
  for the in-flight uploads of the round it closes and holds new ones back until it commits; no
  update can slip into a round that is already closed.
* On SQLite every write transaction starts with ``BEGIN IMMEDIATE``, which serialises writers
  outright (the locks are no-ops there).

The upload path's transaction is a ``Script`` (a generator of statements) so that it is written
once and runs blocking (``Database.run``: SQLite, or anywhere in a thread) or on the event loop
(``LoopConnection``: PostgreSQL, no thread hand-off per batch).

Usage: ``db = Database(settings); with db.begin() as session: ...``.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import contextmanager, suppress
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

from aggregator.core.config import Settings

if TYPE_CHECKING:  # alembic (and mako) load only when migrating: workers start faster
    from alembic.config import Config

__all__ = ["Database", "LoopConnection", "Rows", "Script", "Statement", "alembic_config", "make_engine",
           "run_migrations"]

log = logging.getLogger(__name__)

_LOCK_CLASS = 0x46504100  # "FPA\0": namespace of our advisory locks (first key of the pair)
_MIGRATION_LOCK = 0x7FFF  # second key of the migration lock (model pks are small positive ints)
_ALEMBIC_DIR = Path(__file__).with_name("alembic")

T = TypeVar("T")
Statement = tuple[str, Mapping[str, object]]  # SQL with ``:name`` placeholders, and its parameters
Rows = list[tuple[Any, ...]]
# A transaction written once as a generator: it yields each statement, is sent that statement's
# rows, and returns its result. ``Database.run`` executes it on a blocking connection (SQLite, or in
# a thread) and ``LoopConnection.run`` on the event loop (PostgreSQL), so the upload path's SQL and
# its decisions exist once.
Script = Generator[Statement, Rows, T]


def make_engine(url: str, *, pool_size: int = 10, max_overflow: int = 10) -> Engine:
    """An engine with our per-dialect setup (SQLite: WAL, foreign keys, BEGIN IMMEDIATE)."""
    if url.startswith("sqlite"):
        memory = url in ("sqlite://", "sqlite:///:memory:")  # one shared connection (SingletonThreadPool)
        pool_args = {} if memory else {"pool_size": pool_size, "max_overflow": max_overflow}
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **pool_args)

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn: sqlite3.Connection, _record: ConnectionPoolEntry) -> None:
            dbapi_conn.isolation_level = None  # let SQLAlchemy's "begin" hook below issue BEGIN
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")  # durable commit before we answer 202
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Connection) -> None:
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


def _run(script: Script[T], execute: Callable[[str, Mapping[str, object]], Rows]) -> T:
    """Feed each statement the script yields to ``execute`` and send the rows back; its return value."""
    try:
        statement = next(script)
        while True:
            statement = script.send(execute(*statement))
    except StopIteration as done:
        result: T = done.value
        return result
    finally:
        script.close()


class LoopConnection:
    """One psycopg ``AsyncConnection`` used from the event loop by one task at a time (a committer).

    The upload path's transaction then needs no thread: handing every batch to a worker thread and
    back (and the GIL between them) was most of the upload latency tail. Connects lazily, inside the
    running loop. A kept connection the server has dropped meanwhile (restart, idle timeout) is
    found out at ``BEGIN``, before anything was sent, so that transaction is retried once on a new
    connection. A failure later in a transaction is raised, not retried (one in ``COMMIT`` leaves
    unknown whether the batch was stored), and the next transaction connects afresh.
    """

    def __init__(self, conninfo: str, *, application_name: str = "fedpa-aggregator") -> None:
        self._conninfo = conninfo
        self._application_name = application_name  # shown in pg_stat_activity
        self._conn: psycopg.AsyncConnection | None = None

    async def _begin(self) -> psycopg.AsyncConnection:
        conn = self._conn
        if conn is not None and not conn.closed:
            try:
                await conn.execute("BEGIN")
                return conn
            except psycopg.OperationalError:
                await self.close()
        conn = self._conn = await psycopg.AsyncConnection.connect(
            self._conninfo, autocommit=True, application_name=self._application_name)
        await conn.execute("BEGIN")
        return conn

    async def run(self, script: Script[T]) -> T:
        """Run ``script`` in one transaction, committed before this returns; rolled back if it raises."""
        try:
            conn = await self._begin()
            try:
                async with conn.cursor() as cursor:
                    statement = next(script)
                    while True:
                        sql, params = statement
                        await cursor.execute(_pyformat(sql), params)
                        statement = script.send(await cursor.fetchall() if cursor.description is not None else [])
            except StopIteration as done:
                await conn.execute("COMMIT")
                result: T = done.value
                return result
            except BaseException:
                if not conn.closed:
                    with suppress(psycopg.Error):
                        await conn.execute("ROLLBACK")
                raise
        except psycopg.OperationalError:
            await self.close()  # the connection may be broken: start afresh next time
            raise
        finally:
            script.close()

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()


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

    def run(self, script: Script[T]) -> T:
        """Run ``script`` (see ``Script``) in one transaction on a pooled DBAPI connection; blocking.

        For the hot path, bypassing SQLAlchemy's statement machinery: building and compiling its
        statements through the ORM cost ~2 ms of CPU per upload, which capped a worker near 400
        uploads/s. Everything else uses sessions. SQLite gets the same ``BEGIN IMMEDIATE`` as sessions.
        """
        conn = self.engine.raw_connection()
        try:
            cursor = conn.cursor()
            if not self.is_postgres:
                cursor.execute("BEGIN IMMEDIATE")

            def execute(sql: str, params: Mapping[str, object]) -> Rows:
                cursor.execute(_pyformat(sql) if self.is_postgres else sql, params)
                return list(cursor.fetchall()) if cursor.description is not None else []

            result = _run(script, execute)
            conn.commit()
            return result
        except BaseException:
            conn.rollback()
            raise
        finally:
            conn.close()  # back to the pool

    def loop_connection(self, application_name: str = "fedpa-aggregator") -> LoopConnection | None:
        """A new event-loop connection to the same PostgreSQL database; None on SQLite (use ``run``)."""
        if not self.is_postgres:
            return None
        return LoopConnection(self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False),
                              application_name=application_name)

    def read_one(self, sql: str, params: Mapping[str, object]) -> tuple[Any, ...] | None:
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

    def round_lock(self, model_pk: int, *, exclusive: bool) -> Statement | None:
        """The statement taking the transaction-scoped round lock; None where there is none (SQLite)."""
        if not self.is_postgres:
            return None
        fn = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
        return f"SELECT {fn}(:c, :k)", {"c": _LOCK_CLASS, "k": model_pk}

    def lock_round(self, session: Session, model_pk: int, *, exclusive: bool) -> None:
        """Transaction-scoped round lock: shared for sync uploads, exclusive for aggregation."""
        statement = self.round_lock(model_pk, exclusive=exclusive)
        if statement is not None:
            session.execute(text(statement[0]), statement[1])

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def migrate(self) -> None:
        run_migrations(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()

"""Alembic environment: migrations for aggregator.models, online only.

Programmatic runs (``aggregator.db.run_migrations``) pass an open connection in
``config.attributes["connection"]``; the ``alembic`` CLI builds an engine from ``-x url=…`` or
``FEDPA_DATABASE_URL``.
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection

from aggregator.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    if config.config_file_name is not None:
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    from aggregator.core.config import Settings
    from aggregator.db import make_engine

    url = context.get_x_argument(as_dictionary=True).get("url") or Settings().database_url
    engine = make_engine(url, pool_size=1, max_overflow=0)
    with engine.connect() as conn:
        _run(conn)
        conn.commit()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported; run against a database")
run_migrations_online()

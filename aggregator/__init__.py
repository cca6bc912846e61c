"""FedPA aggregator: the FastAPI service that publishes shared state and averages device updates.

Layout follows the FastAPI full-stack template: ``api/routes`` (thin HTTP handlers), ``api/deps``
(database and auth dependencies), ``core`` (settings, errors, metrics), ``models`` (SQLAlchemy),
``schemas`` (pydantic), ``services`` (publishing, intake, rounds), ``alembic`` (migrations).
Nothing under this package imports torch: tensor maths is numpy + safetensors (``fedpa.aggregation``).

Usage: ``fedpa-aggregator serve --workers 2 --database-url postgresql+psycopg://…``.
"""

__all__: list[str] = []

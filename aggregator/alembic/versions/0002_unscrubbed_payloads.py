"""Index of aggregated or superseded updates whose tensors are not yet dropped.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27

Payloads are dropped after the aggregation commits, in small transactions (``scrub_payloads``);
this partial index lets each pass find them without scanning every aggregated row ever stored.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_UNSCRUBBED = sa.text("status <> 'pending' AND tensors IS NOT NULL")


def upgrade() -> None:
    op.create_index("ix_updates_unscrubbed", "updates", ["id"], postgresql_where=_UNSCRUBBED,
                    sqlite_where=_UNSCRUBBED)


def downgrade() -> None:
    op.drop_index("ix_updates_unscrubbed", table_name="updates")

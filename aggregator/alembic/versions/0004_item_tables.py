"""Item tables: per-item input codes published per model version, with their own version.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "item_tables",
        sa.Column("model_pk", sa.Integer(), sa.ForeignKey("models.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("model_version", sa.Integer(), primary_key=True),
        sa.Column("table_version", sa.Integer(), primary_key=True),
        sa.Column("n_items", sa.Integer(), nullable=False),
        sa.Column("meta_json", sa.Text(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("item_tables")

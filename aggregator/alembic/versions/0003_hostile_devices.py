"""Refused aggregations, token expiry and admin-issued enrollment keys (issue 16).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04

``aggregations.outcome``/``reason`` record an aggregation refused by the safety check (the state
stays at the last good version); ``devices.token_expires_at`` lets tokens expire and rotate;
``enrollment_keys`` holds the sha256 of keys the admin issues for registering devices.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("aggregations") as batch:
        batch.add_column(sa.Column("outcome", sa.String(length=16), nullable=False, server_default="applied"))
        batch.add_column(sa.Column("reason", sa.Text(), nullable=True))
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("token_expires_at", sa.Float(), nullable=True))
    op.create_table(
        "enrollment_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("model_pk", sa.Integer(), nullable=False),
        sa.Column("max_devices", sa.Integer(), nullable=False),
        sa.Column("used", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=True),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("bucket_tokens", sa.Float(), nullable=False),
        sa.Column("bucket_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["model_pk"], ["models.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_hash"),
    )
    op.create_index("ix_enrollment_keys_model_pk", "enrollment_keys", ["model_pk"])


def downgrade() -> None:
    op.drop_index("ix_enrollment_keys_model_pk", table_name="enrollment_keys")
    op.drop_table("enrollment_keys")
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("token_expires_at")
    with op.batch_alter_table("aggregations") as batch:
        batch.drop_column("reason")
        batch.drop_column("outcome")

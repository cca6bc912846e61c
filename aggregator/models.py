"""Database tables (SQLAlchemy 2 typed declarative); the Alembic migrations create exactly these.

The shared state is stored as tensors in the database: one safetensors blob per
(model, model version, state version) in ``bank_versions``. An accepted update is one row of
``updates`` (its safetensors deltas in ``tensors``) committed before the 202, and the ``models``
row is the round row that aggregation locks (``SELECT … FOR NO KEY UPDATE``).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = ["UNSCRUBBED", "Aggregation", "BankVersion", "Base", "BundleFile", "Device", "EnrollmentKey",
           "ItemTableVersion", "Model", "Update"]

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
_BigId = BigInteger().with_variant(Integer, "sqlite")


class Base(DeclarativeBase):
    pass


class Model(Base):
    """One published model id: its current version, round state and configuration."""

    __tablename__ = "models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[str] = mapped_column(String(64), unique=True)
    model_version: Mapped[int] = mapped_column(Integer)
    state_version: Mapped[int] = mapped_column(Integer, default=0)  # bumps at every aggregation
    round: Mapped[int] = mapped_column(Integer, default=0)  # the open round (sync) / buffer (async)
    manifest_json: Mapped[str] = mapped_column(Text)  # manifest.json exactly as published
    config_json: Mapped[str] = mapped_column(Text)  # RoundConfig
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)


class BundleFile(Base):
    """One file of the current bundle, served to devices; ``manifest.json`` included."""

    __tablename__ = "bundle_files"

    model_pk: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), primary_key=True)
    model_version: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    content: Mapped[bytes] = mapped_column(LargeBinary)


class BankVersion(Base):
    """The whole shared bank (gate + every group value) at one state version, as safetensors."""

    __tablename__ = "bank_versions"

    model_pk: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), primary_key=True)
    model_version: Mapped[int] = mapped_column(Integer, primary_key=True)
    state_version: Mapped[int] = mapped_column(Integer, primary_key=True)
    tensors: Mapped[bytes] = mapped_column(LargeBinary)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column(Float)


class Device(Base):
    """A registered device: its token (sha256 only) scoped to one model, and its rate bucket."""

    __tablename__ = "devices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_id: Mapped[str] = mapped_column(String(64), unique=True)
    model_pk: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[float] = mapped_column(Float)
    token_expires_at: Mapped[float | None] = mapped_column(Float, nullable=True)  # None: never
    # Token bucket (rate limit): tokens left at time bucket_at (unix seconds).
    bucket_tokens: Mapped[float] = mapped_column(Float)
    bucket_at: Mapped[float] = mapped_column(Float)


class EnrollmentKey(Base):
    """A key the admin issued for registering devices of one model: limited uses, expiry, rate bucket."""

    __tablename__ = "enrollment_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 of the key; the key is shown once
    model_pk: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    max_devices: Mapped[int] = mapped_column(Integer)
    used: Mapped[int] = mapped_column(Integer, default=0)
    expires_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[float] = mapped_column(Float)
    bucket_tokens: Mapped[float] = mapped_column(Float)  # registrations per minute (token bucket)
    bucket_at: Mapped[float] = mapped_column(Float)


# Used updates whose tensors still wait for scrub_payloads (dropped after the aggregation). Queries
# repeat this literal text, so both databases can prove the partial index applies.
UNSCRUBBED = "status <> 'pending' AND tensors IS NOT NULL"


class Update(Base):
    """One accepted update; ``status`` goes pending → aggregated (or superseded by a new model version, or
    refused with the aggregation that would have used it: non-finite or too large a step)."""

    __tablename__ = "updates"
    __table_args__ = (
        UniqueConstraint("model_pk", "nonce", name="uq_updates_model_nonce"),  # replay protection
        Index("ix_updates_pending", "model_pk", "round",
              postgresql_where=text("status = 'pending'"), sqlite_where=text("status = 'pending'")),
        Index("ix_updates_model_version_status", "model_pk", "model_version", "status"),
        Index("ix_updates_unscrubbed", "id", postgresql_where=text(UNSCRUBBED), sqlite_where=text(UNSCRUBBED)),
    )

    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    model_pk: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    model_version: Mapped[int] = mapped_column(Integer)
    device_pk: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    nonce: Mapped[str] = mapped_column(String(64))
    base_version: Mapped[int] = mapped_column(Integer)
    round: Mapped[int] = mapped_column(Integer)
    groups_key: Mapped[str] = mapped_column(String(1024))  # "attr=value,attr=value", sorted
    example_count: Mapped[int] = mapped_column(BigInteger)
    privacy_json: Mapped[str] = mapped_column(Text)
    tensors: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)  # dropped once aggregated
    nbytes: Mapped[int] = mapped_column(Integer)
    received_at: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    aggregated_into: Mapped[int | None] = mapped_column(Integer, nullable=True)  # state version produced


class Aggregation(Base):
    """Audit row of one aggregation: which round, how many updates, who was skipped, how long."""

    __tablename__ = "aggregations"
    __table_args__ = (Index("ix_aggregations_model", "model_pk", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_pk: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    model_version: Mapped[int] = mapped_column(Integer)
    round: Mapped[int] = mapped_column(Integer)
    from_state_version: Mapped[int] = mapped_column(Integer)
    to_state_version: Mapped[int] = mapped_column(Integer)
    updates: Mapped[int] = mapped_column(Integer)
    report_json: Mapped[str] = mapped_column(Text)  # reporters, skipped groups
    trigger: Mapped[str] = mapped_column(String(16))
    # "applied", or "refused" (the state did not change; reason says why, e.g. non_finite).
    outcome: Mapped[str] = mapped_column(String(16), default="applied", server_default="applied")
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    duration_s: Mapped[float] = mapped_column(Float)
    created_at: Mapped[float] = mapped_column(Float)


class ItemTableVersion(Base):
    """One published item table of a model version (docs/api.md "Item table"), as safetensors.

    Versioned apart from the model: a refreshed table is a new ``table_version`` of the same
    model version; devices are served the highest one of the current model version.
    """

    __tablename__ = "item_tables"

    model_pk: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), primary_key=True)
    model_version: Mapped[int] = mapped_column(Integer, primary_key=True)
    table_version: Mapped[int] = mapped_column(Integer, primary_key=True)
    n_items: Mapped[int] = mapped_column(Integer)
    meta_json: Mapped[str] = mapped_column(Text)  # fedpa.runtime.items.ItemTableMeta
    content: Mapped[bytes] = mapped_column(LargeBinary)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column(Float)

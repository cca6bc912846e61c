"""Pydantic bodies of the REST API (docs/api.md) and the per-model round configuration.

The update metadata itself is ``fedpa.protocol.UpdateMeta`` (shared with every client); this module
holds what only the server speaks: round settings, receipts, status. FastAPI builds the OpenAPI
schema from these classes, so the documentation cannot drift from the code.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AggregationInfo",
    "DeviceCreate",
    "DeviceCreated",
    "ErrorBody",
    "Health",
    "ItemLookup",
    "ItemTableStatus",
    "ModelStatus",
    "PublishResult",
    "RoundConfig",
    "UpdateAccepted",
]


class RoundConfig(BaseModel):
    """How one model's updates become a new shared state (SPEC §3); fixed per model version.

    Given as JSON at publish (any subset of fields); the rest come from the server's settings.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: Literal["sync", "async"] = "sync"
    # sync: close the round once this many updates arrived (all pending ones are then averaged).
    round_size: int = Field(10, ge=1, le=1_000_000)
    # Close a round (sync) / flush the buffer (async) this long after its first pending update,
    # so a round with too few devices still ends. None: only round_size / buffer_size or admin.
    deadline_s: float | None = Field(600.0, gt=0)
    # Privacy threshold: a group adapter changes only when this many clients of the group reported.
    min_reporters: int = Field(3, ge=1)
    server_lr: float = Field(1.0, gt=0, le=100)
    strategy: Literal["mean", "trimmed-mean", "median"] = "mean"
    trim_beta: float = Field(0.1, ge=0, lt=0.5)
    weight_cap: float | None = Field(None, gt=0)  # cap on an update's example count (weight)
    norm_bound: float | None = Field(None, gt=0)  # L2 bound on each whole update before averaging
    buffer_size: int = Field(10, ge=1, le=1_000_000)  # async: apply after K updates (FedBuff)
    staleness_exponent: float = Field(0.5, ge=0, le=10)  # async weight (1 + gap)^-exponent
    max_staleness: int = Field(10, ge=0)  # async: refuse updates more than this many versions old
    # Refuse uploads that declare weaker LDP than the manifest's privacy settings ask for.
    enforce_privacy: bool = True


class ErrorBody(BaseModel):
    """Every refusal: a stable machine code and a message naming the offending value."""

    error: str
    detail: str


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    database: str


class PublishResult(BaseModel):
    model_id: str
    model_version: int
    state_version: int
    config: RoundConfig


class DeviceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model_id: str = Field(min_length=1, max_length=64)


class DeviceCreated(BaseModel):
    device_id: str
    token: str  # shown once; the server keeps only its sha256
    model_id: str


class UpdateAccepted(BaseModel):
    """Receipt of a stored (committed) update; it will be aggregated exactly once."""

    update_id: int
    state_version: int  # the shared-state version current when the update was accepted
    round: int  # the round it belongs to


class AggregationInfo(BaseModel):
    round: int  # the round this aggregation closed
    state_version: int  # the version it produced
    updates: int
    reporters: dict[str, int]  # "gate" / "attr=value" → reporters
    skipped_groups: dict[str, int]  # groups below min_reporters (left unchanged)
    trigger: Literal["size", "deadline", "admin"]
    duration_ms: float
    at: float  # unix time


class ModelStatus(BaseModel):
    model_id: str
    model_version: int
    state_version: int
    mode: Literal["sync", "async"]
    round: int
    pending_updates: int
    reporters: dict[str, int]  # pending updates per "gate" / "attr=value" in the open round/buffer
    last_aggregation: AggregationInfo | None
    accepted_total: int  # accepted for this model version
    aggregated_total: int  # of those, already folded into the shared state
    config: RoundConfig


class ItemLookup(BaseModel):
    """A device's candidates: raw item ids (strings or integers, compared as canonical strings)."""

    model_config = ConfigDict(extra="forbid")
    item_ids: list[str | int] = Field(min_length=1)


class ItemTableStatus(BaseModel):
    """The item table devices are served now (``GET /v1/models/{model_id}/items``)."""

    model_id: str
    model_version: int
    table_version: int
    n_items: int
    sha256: str  # of the published file
    columns: list[dict[str, str | int]]  # the uint8 columns of a lookup answer, in order
    max_lookup_batch: int
    created_at: float

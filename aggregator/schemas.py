"""Pydantic bodies of the REST API (docs/api.md) and the per-model round configuration.

The update metadata itself is ``fedpa.protocol.UpdateMeta`` (shared with every client); this module
holds what only the server speaks: round settings, receipts, status. FastAPI builds the OpenAPI
schema from these classes, so the documentation cannot drift from the code.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from fedpa.wire import ErrorCode

__all__ = [
    "AggregationInfo",
    "DeviceCreate",
    "DeviceCreated",
    "DeviceStatus",
    "EnrollmentKeyCreate",
    "EnrollmentKeyCreated",
    "ErrorBody",
    "Health",
    "ItemLookup",
    "ItemTableStatus",
    "ModelStatus",
    "PublishResult",
    "RoundConfig",
    "UpdateAccepted",
    "error_responses",
]


class RoundConfig(BaseModel):
    """How one model's updates become a new shared state (docs/design.md §3); fixed per model version.

    Given as JSON at publish (any subset of fields); the rest come from the server's settings.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: Literal["sync", "async"] = "sync"
    # sync: close the round once this many distinct devices reported (all pending updates are then used).
    round_size: int = Field(10, ge=1, le=1_000_000)
    # Close a round (sync) / flush the buffer (async) this long after its first pending update,
    # so a round with too few devices still ends. None: only round_size / buffer_size or admin.
    deadline_s: float | None = Field(600.0, gt=0)
    # Privacy threshold: a group adapter changes only when this many distinct devices of the group reported.
    min_reporters: int = Field(3, ge=1)
    server_lr: float = Field(1.0, gt=0, le=100)
    strategy: Literal["mean", "trimmed-mean", "median"] = "mean"
    trim_beta: float = Field(0.1, ge=0, lt=0.5)
    # Robust defaults (issue 16): one hostile device must not steer the shared state.
    # L2 bound on each whole update before averaging. "auto": derived from the manifest's LDP clip
    # norm C and noise σ (fedpa.aggregation.ldp_norm_bound) when LDP is on, else the round's median
    # update norm; None: no bound.
    norm_bound: float | Literal["auto"] | None = Field("auto", json_schema_extra={"examples": ["auto", 5.0]})
    weight_cap: float | None = Field(None, gt=0)  # absolute cap on one device's weight (example count)
    # Cap on one device's weight: this many times the round's median device weight; None: no cap.
    weight_cap_median: float | None = Field(4.0, ge=1)
    # Uploads declaring more examples are refused (422): the weight is the example count.
    max_example_count: int = Field(100_000, ge=1, le=2**31 - 1)
    # Refuse an aggregation that moves any tensor further than this (L2); "auto": server_lr × the
    # numeric norm bound in force (none with a median bound); None: only the finiteness check.
    max_step: float | Literal["auto"] | None = Field("auto", json_schema_extra={"examples": ["auto", 10.0]})
    buffer_size: int = Field(10, ge=1, le=1_000_000)  # async: apply after K updates (FedBuff; counts updates)
    staleness_exponent: float = Field(0.5, ge=0, le=10)  # async weight (1 + gap)^-exponent
    max_staleness: int = Field(10, ge=0)  # async: refuse updates more than this many versions old
    # Refuse uploads that declare weaker LDP than the manifest's privacy settings ask for.
    enforce_privacy: bool = True

    @field_validator("norm_bound", "max_step")
    @classmethod
    def _positive_finite(cls, value: float | str | None) -> float | str | None:
        if isinstance(value, float) and not (0 < value < float("inf")):
            raise ValueError(f"must be a positive finite number, 'auto' or null, got {value}")
        return value


class ErrorBody(BaseModel):
    """Every refusal: a stable machine code and a message naming the offending value."""

    error: ErrorCode  # the OpenAPI schema lists every code (fedpa.wire.ErrorCode)
    detail: str


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """A route's ``responses=``: each status code answers with an ``ErrorBody`` (FastAPI's own type)."""
    return {code: {"model": ErrorBody} for code in codes}


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
    expires_at: float | None = None  # unix time the token stops working (rotate before); None: never


class EnrollmentKeyCreate(BaseModel):
    """Admin: a key that lets up to ``max_devices`` devices of ``model_id`` register themselves."""

    model_config = ConfigDict(extra="forbid")
    model_id: str = Field(min_length=1, max_length=64)
    max_devices: int = Field(100, ge=1, le=10_000_000)
    ttl_s: float | None = Field(7 * 86400.0, gt=0, le=10 * 365 * 86400.0)  # None: never expires


class EnrollmentKeyCreated(BaseModel):
    key: str  # shown once; the server keeps only its sha256
    model_id: str
    max_devices: int
    expires_at: float | None


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
    outcome: Literal["applied", "refused"] = "applied"
    reason: str | None = None  # why it was refused (the state stayed at the last good version)


class ModelStatus(BaseModel):
    model_id: str
    model_version: int
    state_version: int
    mode: Literal["sync", "async"]
    round: int
    pending_updates: int
    reporters: dict[str, int]  # distinct devices per "gate" / "attr=value" in the open round/buffer
    pending_devices: int  # distinct devices among them (what round_size and min_reporters count)
    last_aggregation: AggregationInfo | None
    last_refused: AggregationInfo | None  # the last aggregation refused by the safety check, if any
    accepted_total: int  # accepted for this model version
    aggregated_total: int  # of those, already folded into the shared state
    refused_total: int  # of those, dropped with a refused aggregation
    config: RoundConfig


class DeviceStatus(BaseModel):
    """What a device needs to know (no per-group counts, which would reveal other devices' groups)."""

    model_id: str
    model_version: int
    state_version: int
    mode: Literal["sync", "async"]
    round: int


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

"""The REST wire protocol's JSON bodies (docs/design.md §7), shared by the aggregator and every client.

Tensor bodies are safetensors (``fedpa.payload``); these pydantic models are the JSON parts. Edge
client, Android app and server agree because they all follow this one module (and the OpenAPI
schema the server generates from it).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["UpdateMeta", "UpdatePrivacy"]


class UpdatePrivacy(BaseModel):
    """What the device applied before upload (the server records it; it cannot verify noise)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    mechanism: Literal["gaussian", "laplace", "none"]
    clip_norm: float = Field(gt=0)
    noise_multiplier: float = Field(ge=0)
    epsilon_spent: float = Field(ge=0)  # device's cumulative ε after this upload (inf → null not allowed)
    delta: float = Field(gt=0, lt=1)


class UpdateMeta(BaseModel):
    """Metadata sent beside the safetensors deltas of one update upload."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    model_id: str
    model_version: int = Field(ge=1)
    base_version: int = Field(ge=0)  # shared-state version the device trained from
    groups: dict[str, int]  # the device's value of each grouping attribute
    example_count: int = Field(ge=1)
    nonce: str = Field(min_length=16, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    privacy: UpdatePrivacy

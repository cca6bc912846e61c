"""The REST wire protocol's JSON bodies (docs/design.md §7), shared by the aggregator and every client.

Tensor bodies are safetensors (``fedpa.payload``); these pydantic models are the JSON parts. Edge
client, Android app and server agree because they all follow this one module (and the OpenAPI
schema the server generates from it).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from fedpa.privacy import DEFAULT_DELTA, UNBOUNDED, Mechanism, PrivacyConfig

__all__ = ["UpdateMeta", "UpdatePrivacy"]


class UpdatePrivacy(BaseModel):
    """What the device applied before upload (the server records it; it cannot verify noise)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    mechanism: Mechanism
    clip_norm: float = Field(gt=0)
    noise_multiplier: float = Field(ge=0)
    epsilon_spent: float = Field(ge=0)  # device's cumulative ε after this upload (inf → null not allowed)
    delta: float = Field(gt=0, lt=1)

    @classmethod
    def applied(cls, config: PrivacyConfig | None, *, epsilon_spent: float) -> UpdatePrivacy:
        """What an upload made with ``config`` declares (None: LDP off — no bound at all, ε unbounded)."""
        if config is None:
            return cls(mechanism="none", clip_norm=UNBOUNDED, noise_multiplier=0.0, epsilon_spent=UNBOUNDED,
                       delta=DEFAULT_DELTA)
        return cls(mechanism=config.mechanism, clip_norm=config.clip_norm,
                   noise_multiplier=config.upload.noise_multiplier, epsilon_spent=min(epsilon_spent, UNBOUNDED),
                   delta=config.delta)


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

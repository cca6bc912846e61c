"""Server settings from the environment (``FEDPA_*``), validated once, cached.

pydantic-settings maps ``FEDPA_DATABASE_URL`` → ``database_url``; nested round defaults use ``__``
(``FEDPA_DEFAULT_ROUND__MODE=async``). In production the settings refuse to start with unsafe
defaults (no or short admin token, the implicit SQLite file, open device registration unless
``FEDPA_ENROLLMENT=open`` is set explicitly) rather than run insecurely.

Usage: ``settings = get_settings()`` (the CLI maps its flags onto the environment first).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from aggregator.schemas import RoundConfig
from fedpa.errors import ConfigError

__all__ = ["DEFAULT_DATABASE_URL", "MIN_ADMIN_TOKEN_CHARS", "Settings", "get_settings"]



def _default_database_url() -> str:
    """SQLite in the user's data folder (``$XDG_DATA_HOME/fedpa``), not the current one.

    Why: the server and the admin commands then find the same database wherever they are run,
    and SQLite's ``-wal``/``-shm`` side files never land in a checkout.
    """
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return f"sqlite:///{base / 'fedpa' / 'aggregator.db'}"


DEFAULT_DATABASE_URL = _default_database_url()
MIN_ADMIN_TOKEN_CHARS = 32


class Settings(BaseSettings):
    """Everything the server reads from its environment; the CLI only maps flags onto these."""

    model_config = SettingsConfigDict(env_prefix="FEDPA_", env_nested_delimiter="__", extra="ignore")

    env: Literal["development", "production"] = "development"
    database_url: str = DEFAULT_DATABASE_URL
    # Admin bearer token; with none configured every admin endpoint answers 401.
    admin_token: SecretStr | None = None
    # Who may register a device (POST /v1/devices):
    #   open            anyone (demos, tests); production refuses it unless FEDPA_ENROLLMENT=open is explicit
    #   enrollment-key  a key the admin issued (POST /v1/enrollment-keys: per-model, limited uses,
    #                   expiry, rate-limited) or the static FEDPA_REGISTRATION_KEY, as bearer token
    #   admin-issued    only the admin; it hands each device its token
    enrollment: Literal["open", "enrollment-key", "admin-issued"] = "open"
    # A static enrollment key (bearer token of POST /v1/devices); setting it implies enrollment-key mode.
    registration_key: SecretStr | None = None
    enrollment_rate_per_minute: float = Field(60.0, gt=0)  # registrations per issued key (token bucket)
    enrollment_burst: int = Field(20, ge=1)
    # Device tokens expire this long after issue (rotate with POST /v1/devices/token); None: never.
    token_ttl_s: float | None = Field(90 * 86400.0, gt=0)

    max_upload_bytes: int = Field(1 << 20, ge=1024)  # one update body (safetensors)
    max_bundle_bytes: int = Field(512 << 20, ge=1024)  # one publish request (multipart)
    max_metadata_bytes: int = Field(16384, ge=1024)  # safetensors __metadata__ of one update
    # A request body must arrive within this many seconds of the request (slow-body clients → 408).
    body_timeout_s: float = Field(30.0, gt=0)
    # Per-device token bucket, held in the database so it is exact across workers; 0 disables.
    rate_limit_per_minute: float = Field(60.0, ge=0)
    rate_limit_burst: int = Field(10, ge=1)
    # Per-device token bucket of item-table lookups, per worker (a read path: no database write); 0 disables.
    # A device ranks up to 1,024 candidates per lookup; the fleet and the apps make a few per round.
    lookup_rate_per_minute: float = Field(600.0, ge=0)
    lookup_burst: int = Field(120, ge=1)
    # Device-token lookups are cached per worker this long; a revoked token lives at most this.
    token_cache_s: float = Field(10.0, ge=0)

    default_round: RoundConfig = RoundConfig()
    keep_state_versions: int = Field(5, ge=1)  # old shared-state versions kept for late downloads
    keep_update_payloads: bool = False  # drop an update's tensors once aggregated (privacy)

    scheduler_enabled: bool = True  # per-worker background task closing due rounds
    scheduler_interval_s: float = Field(0.1, ge=0)  # minimum gap between two checks of a worker
    scheduler_tick_s: float = Field(1.0, gt=0)  # idle re-check, for deadlines
    auto_migrate: bool = True  # alembic upgrade head at startup (under a lock, safe with N workers)

    # Group commit (services/intake.py): most uploads per transaction; transactions in flight per worker.
    intake_max_batch: int = Field(64, ge=1, le=1000)  # 12 bound parameters per upload: stay far below driver limits
    intake_committers: int = Field(1, ge=1)
    intake_max_queue: int = Field(4096, ge=1)  # uploads waiting for their transaction; beyond → 503
    intake_max_queue_bytes: int = Field(64 << 20, ge=1 << 20)  # their bodies' bytes; beyond → 503
    intake_commit_delay_ms: float = Field(4.0, ge=0, le=1000)  # a small batch waits this long for more

    db_pool_size: int = Field(10, ge=1)
    db_max_overflow: int = Field(10, ge=0)

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.env != "production":
            return self
        token = self.admin_token.get_secret_value() if self.admin_token else ""
        if len(token) < MIN_ADMIN_TOKEN_CHARS:
            raise ConfigError(
                f"FEDPA_ENV=production needs FEDPA_ADMIN_TOKEN of at least {MIN_ADMIN_TOKEN_CHARS} characters "
                f"(got {len(token)}); create one with `fedpa-aggregator admin create-token`"
            )
        if self.database_url == DEFAULT_DATABASE_URL:
            raise ConfigError("FEDPA_ENV=production needs an explicit FEDPA_DATABASE_URL (e.g. PostgreSQL)")
        if self.enrollment_mode == "open" and "enrollment" not in self.model_fields_set:
            raise ConfigError("FEDPA_ENV=production refuses open device registration by default: set "
                              "FEDPA_ENROLLMENT=enrollment-key or admin-issued (or FEDPA_ENROLLMENT=open explicitly)")
        return self

    @property
    def enrollment_mode(self) -> str:
        """The effective mode: a static registration key closes ``open`` registration (as it always did)."""
        if self.enrollment == "open" and self.registration_key is not None:
            return "enrollment-key"
        return self.enrollment


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from the environment once."""
    return Settings()

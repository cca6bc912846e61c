"""What the server knows about a published model version, parsed once per worker.

A model version's manifest and round configuration never change once published (a new
configuration is a new version), so ``(model_id, model_version)`` is an exact cache key: the hot
upload path validates tensors without parsing JSON or touching the database. Whether the version
is still *current* is re-checked inside the upload's transaction, never taken from the cache.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from aggregator.core.errors import ConflictError, NotFoundError
from aggregator.models import Model
from aggregator.schemas import RoundConfig
from fedpa.errors import BundleError
from fedpa.manifest import Manifest, PrivacySettings, parse_manifest
from fedpa.state import SharedStateSpec, TensorSpec
from fedpa.wire import ErrorCode

__all__ = ["Catalog", "ModelInfo", "model_version_conflict", "round_config_json", "stored_manifest"]

_MAX_ENTRIES = 64


@dataclass(frozen=True)
class ModelInfo:
    """One published model version, as the services need it."""

    pk: int
    model_id: str
    model_version: int
    spec: SharedStateSpec
    config: RoundConfig
    privacy: PrivacySettings

    @property
    def tensors(self) -> dict[str, TensorSpec]:
        return self.spec.by_name()


def stored_manifest(manifest_json: str, model_id: str) -> Manifest:
    """The manifest a model was published with, or 409 ``model_format_outdated`` if this server can't read it.

    Why: after an upgrade that bumps the manifest format, models published before it are still in the
    database; their endpoints must say what to do (publish again) instead of failing with a 500, and
    every other model keeps working.
    """
    try:
        return parse_manifest(json.loads(manifest_json), source=f"model {model_id!r}")
    except (BundleError, ValueError) as exc:
        raise ConflictError(f"{exc} — publish the model again, built with this version",
                            code=ErrorCode.MODEL_FORMAT_OUTDATED) from exc


def _parse(row: Model) -> ModelInfo:
    manifest = stored_manifest(row.manifest_json, row.model_id)
    return ModelInfo(pk=row.id, model_id=row.model_id, model_version=row.model_version,
                     spec=manifest.shared_state, config=RoundConfig.model_validate_json(row.config_json),
                     privacy=manifest.privacy)


class Catalog:
    """Per-worker cache of parsed model versions (thread-safe; bounded)."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, int], ModelInfo] = {}
        self._lock = threading.Lock()

    def _put(self, info: ModelInfo) -> ModelInfo:
        with self._lock:
            if len(self._entries) >= _MAX_ENTRIES:
                self._entries.pop(next(iter(self._entries)))
            self._entries[(info.model_id, info.model_version)] = info
        return info

    def current(self, session: Session, model_id: str) -> ModelInfo:
        """The model's current version (one indexed read; the parse is cached). 404 if unknown."""
        return self.snapshot(session, model_id)[0]

    def snapshot(self, session: Session, model_id: str) -> tuple[ModelInfo, int]:
        """The current version and its shared-state version, read together (one row)."""
        row = session.execute(select(Model.id, Model.model_version, Model.state_version)
                              .where(Model.model_id == model_id)).one_or_none()
        if row is None:
            raise NotFoundError(f"unknown model {model_id!r}", code=ErrorCode.UNKNOWN_MODEL)
        cached = self._entries.get((model_id, row.model_version))
        if cached is None:
            cached = self._put(_parse(session.get_one(Model, row.id)))
        return cached, row.state_version

    def cached(self, model_id: str, model_version: int) -> ModelInfo | None:
        """The parsed version if this worker has seen it (no database access)."""
        return self._entries.get((model_id, model_version))

    def version(self, session: Session, model_id: str, model_version: int) -> ModelInfo:
        """A specific version for validating an upload: cached, else it must be the current one (409)."""
        cached = self._entries.get((model_id, model_version))
        if cached is not None:
            return cached
        info = self.current(session, model_id)
        if info.model_version != model_version:
            raise model_version_conflict(model_id, model_version, info.model_version)
        return info

    def by_pk(self, session: Session, model_pk: int) -> ModelInfo:
        """The current version of the model with this primary key (manifest loaded only on a miss)."""
        row = session.execute(select(Model.model_id, Model.model_version).where(Model.id == model_pk)).one_or_none()
        if row is None:
            raise NotFoundError(f"unknown model pk {model_pk}", code=ErrorCode.UNKNOWN_MODEL)
        cached = self._entries.get((row.model_id, row.model_version))
        return cached if cached is not None else self._put(_parse(session.get_one(Model, model_pk)))


def model_version_conflict(model_id: str, sent: int, current: int) -> ConflictError:
    return ConflictError(
        f"model {model_id!r} is at model_version {current}, the update says {sent}; download the new bundle",
        code=ErrorCode.MODEL_VERSION_MISMATCH)


def round_config_json(config: RoundConfig) -> str:
    return json.dumps(config.model_dump(), sort_keys=True)

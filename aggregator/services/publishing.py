"""Publishing a model: verify a bundle, store its files and its initial shared state (version 0).

The bundle is checked by the one implementation of the format (``fedpa.manifest.read_manifest``:
sizes, sha256, format version), and its ``shared_state.safetensors`` must hold exactly the stored
tensors of the manifest's initial law; the bank stored as state version 0 is materialised from
them and the law's seed (``fedpa.state.SharedStateSpec.initial_bank``), as every device does.
A newer ``model_version`` of a known model replaces the bundle and the bank, and supersedes
the updates still pending for the old version (they were trained on another architecture or
state and cannot be averaged into the new one).

Usage: ``publish_bundle(db, Path("bundle/"), config={"round_size": 50}, defaults=settings.default_round)``.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import numpy as np
from pydantic import ValidationError
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from aggregator.core.errors import ConflictError
from aggregator.db import Database
from aggregator.models import BundleFile, Model, Update
from aggregator.schemas import PublishResult, RoundConfig
from aggregator.services.bank import prune_bank, store_bank
from aggregator.services.catalog import ModelInfo, round_config_json
from fedpa.errors import BundleError, ConfigError
from fedpa.manifest import Manifest, read_manifest
from fedpa.payload import decode_tensors
from fedpa.wire import MANIFEST_NAME, SHARED_STATE_FILE, SIGNATURE_NAME, ErrorCode

__all__ = ["merge_config", "publish_bundle", "stage_files"]

_COPY_CHUNK = 1 << 20


def _safe_name(name: str) -> str:
    """A bundle-relative POSIX path that cannot escape the staging directory."""
    path = PurePosixPath(name)
    if (not name or len(name) > 255 or "\\" in name or "\x00" in name or path.is_absolute()
            or any(part in ("", ".", "..") for part in name.split("/"))):
        raise BundleError(f"invalid bundle file name {name!r} (must be a relative path without '..')")
    return name


def stage_files(items: Iterable[tuple[str, BinaryIO]], dest: Path) -> list[str]:
    """Write uploaded bundle files into ``dest`` under their bundle-relative names."""
    names: list[str] = []
    for raw_name, fh in items:
        name = _safe_name(raw_name)
        if name in names:
            raise BundleError(f"bundle file {name!r} uploaded twice")
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as out:
            shutil.copyfileobj(fh, out, _COPY_CHUNK)
        names.append(name)
    return names


def merge_config(defaults: RoundConfig, overrides: Mapping[str, object] | None) -> RoundConfig:
    """Publish-time round settings over the server's defaults; unknown keys are refused."""
    try:
        return RoundConfig.model_validate({**defaults.model_dump(), **dict(overrides or {})})
    except ValidationError as exc:
        raise ConfigError(f"invalid round config {dict(overrides or {})}: {exc}") from exc


def publish_bundle(db: Database, bundle_dir: Path, *, config: Mapping[str, object] | None,
                   defaults: RoundConfig, strict: bool = False) -> PublishResult:
    """Verify and store a bundle; with ``strict`` the directory may hold nothing the manifest doesn't list."""
    manifest = read_manifest(bundle_dir)
    listed = set(manifest.files)
    if strict:
        present = {p.relative_to(bundle_dir).as_posix() for p in bundle_dir.rglob("*") if p.is_file()}
        extra = sorted(present - listed - {MANIFEST_NAME, SIGNATURE_NAME})
        if extra:
            raise BundleError(f"files not listed in the manifest: {extra[:5]}")
    if SHARED_STATE_FILE not in listed:
        raise BundleError(f"the manifest lists no {SHARED_STATE_FILE} (the initial shared state)")
    # initial_bank checks the stored tensors (names, shapes, dtype, finite) and draws the rest: a valid bank
    bank = manifest.shared_state.initial_bank(decode_tensors((bundle_dir / SHARED_STATE_FILE).read_bytes()))
    round_config = merge_config(defaults, config)
    try:
        _store(db, bundle_dir, manifest, bank, round_config)
    except IntegrityError as exc:  # a concurrent publish of the same new model id won the race
        raise ConflictError(f"model {manifest.model_id!r} was published concurrently; retry",
                            code=ErrorCode.MODEL_VERSION_NOT_NEWER) from exc
    return PublishResult(model_id=manifest.model_id, model_version=manifest.model_version, state_version=0,
                         config=round_config)


def _store(db: Database, bundle_dir: Path, manifest: Manifest, bank: Mapping[str, np.ndarray],
           round_config: RoundConfig) -> None:
    now = time.time()
    listed = set(manifest.files)
    with db.begin() as session:
        row = session.execute(select(Model).where(Model.model_id == manifest.model_id)
                              .with_for_update()).scalar_one_or_none()
        if row is not None:
            if manifest.model_version <= row.model_version:
                raise ConflictError(
                    f"model {manifest.model_id!r} is already at model_version {row.model_version}; "
                    f"publish a higher one (got {manifest.model_version})", code=ErrorCode.MODEL_VERSION_NOT_NEWER)
            db.lock_round(session, row.id, exclusive=True)  # no upload may land in the old version now
            session.execute(update(Update).where(Update.model_pk == row.id, Update.status == "pending")
                            .values(status="superseded", tensors=None))
            session.execute(delete(BundleFile).where(BundleFile.model_pk == row.id))
            row.model_version, row.state_version, row.round = manifest.model_version, 0, 0
            row.updated_at = now
        else:
            row = Model(model_id=manifest.model_id, model_version=manifest.model_version, state_version=0,
                        round=0, created_at=now, updated_at=now, manifest_json="", config_json="")
            session.add(row)
        row.manifest_json = (bundle_dir / MANIFEST_NAME).read_text()
        row.config_json = round_config_json(round_config)
        session.flush()
        # the publisher's signature is stored and served byte for byte; devices verify it, not us
        signed = [SIGNATURE_NAME] if (bundle_dir / SIGNATURE_NAME).is_file() else []
        for name in [MANIFEST_NAME, *signed, *sorted(listed)]:
            content = (bundle_dir / name).read_bytes()
            entry = manifest.files.get(name)
            sha = entry.sha256 if entry else _sha256(content)
            session.add(BundleFile(model_pk=row.id, model_version=row.model_version, name=name, sha256=sha,
                                   size=len(content), content=content))
        info = ModelInfo(pk=row.id, model_id=row.model_id, model_version=row.model_version,
                         spec=manifest.shared_state, config=round_config, privacy=manifest.privacy)
        store_bank(session, info, 0, bank, now=now)
        prune_bank(session, info, keep_from=0)


def _sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()

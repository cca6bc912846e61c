"""Model publishing (admin, multipart bundle) and bundle downloads (manifest, files)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from fastapi import APIRouter, Request, status
from fastapi.responses import Response
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from aggregator.api.deps import AdminDep, ReaderDep, RuntimeDep
from aggregator.core.errors import NotFoundError
from aggregator.models import BundleFile, Model
from aggregator.schemas import PublishResult, error_responses
from aggregator.services.publishing import publish_bundle, stage_files
from fedpa.errors import BundleError, ConfigError
from fedpa.wire import MODEL_VERSION_HEADER, ErrorCode

__all__ = ["router"]

router = APIRouter(tags=["models"])

_MAX_FILES = 1000
_ERRORS = error_responses(401, 403, 404)
_PUBLISH_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["files"],
    "properties": {
        "files": {"type": "array", "items": {"type": "string", "format": "binary"},
                  "description": "every bundle file, filename = bundle-relative name, manifest.json included"},
        "config": {"type": "string", "description": "JSON object of RoundConfig fields (optional)"},
    }}}}}}


def _config(raw: UploadFile | str | None) -> dict[str, object] | None:
    if raw is None or raw == "":
        return None
    try:
        value = json.loads(raw) if isinstance(raw, str) else None
    except ValueError as exc:
        raise ConfigError(f"config is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ConfigError("config must be a JSON object of round settings")
    return value


@router.post("/v1/models", status_code=status.HTTP_201_CREATED, response_model=PublishResult,
             responses=error_responses(401, 403, 404, 409, 413, 422),
             openapi_extra=_PUBLISH_BODY)
async def publish(request: Request, _: AdminDep, runtime: RuntimeDep) -> PublishResult:
    """Admin: publish a bundle (or a newer version of a model); 201 with its initial state version 0.

    The form is parsed only after the admin token was checked (FastAPI would parse declared form
    fields before any dependency).
    """
    try:
        form = await request.form(max_files=_MAX_FILES, max_fields=4)
    except Exception as exc:  # multipart errors (malformed body, too many parts) are client errors
        raise BundleError(f"could not parse the multipart body: {exc}") from exc
    try:
        uploads = [f for f in form.getlist("files") if isinstance(f, UploadFile)]
        if not uploads:
            raise BundleError("no bundle files: send every file in the multipart field 'files'")
        config = _config(form.get("config"))

        def run() -> PublishResult:
            with tempfile.TemporaryDirectory(prefix="fedpa-publish-") as tmp:
                stage_files(((u.filename or "", u.file) for u in uploads), Path(tmp))
                return publish_bundle(runtime.db, Path(tmp), config=config,
                                      defaults=runtime.settings.default_round, strict=True)

        return await run_in_threadpool(run)
    finally:
        await form.close()


@router.get("/v1/models/{model_id}", responses={**_ERRORS, 200: {
    "content": {"application/json": {}}, "description": "manifest.json of the current version"}})
async def get_manifest(model_id: str, _: ReaderDep, runtime: RuntimeDep) -> Response:
    """The current manifest, byte for byte as published; header ``X-FedPA-Model-Version``."""
    def load() -> tuple[str, int]:
        with runtime.db.sessions() as session:
            row = session.execute(select(Model.manifest_json, Model.model_version)
                                  .where(Model.model_id == model_id)).one_or_none()
        if row is None:
            raise NotFoundError(f"unknown model {model_id!r}", code=ErrorCode.UNKNOWN_MODEL)
        return row.manifest_json, row.model_version

    manifest, version = await run_in_threadpool(load)
    return Response(manifest, media_type="application/json", headers={MODEL_VERSION_HEADER: str(version)})


@router.get("/v1/models/{model_id}/files/{name:path}", responses={**_ERRORS, 200: {
    "content": {"application/octet-stream": {}}, "description": "one bundle file; ETag = its sha256"}})
async def get_file(model_id: str, name: str, request: Request, _: ReaderDep, runtime: RuntimeDep) -> Response:
    """One file of the current bundle; ``If-None-Match`` with its ETag answers 304."""
    def load() -> tuple[str, bytes | None, int]:
        with runtime.db.sessions() as session:
            row = session.execute(
                select(BundleFile.sha256, Model.model_version).join(Model, Model.id == BundleFile.model_pk)
                .where(Model.model_id == model_id, BundleFile.model_version == Model.model_version,
                       BundleFile.name == name)).one_or_none()
            if row is None:
                raise NotFoundError(f"model {model_id!r} has no bundle file {name!r}", code=ErrorCode.UNKNOWN_FILE)
            etag = f'"{row.sha256}"'
            if request.headers.get("if-none-match") == etag:
                return etag, None, row.model_version
            content = session.execute(select(BundleFile.content).join(Model, Model.id == BundleFile.model_pk).where(
                Model.model_id == model_id, BundleFile.model_version == row.model_version,
                BundleFile.name == name)).scalar_one()
        return etag, content, row.model_version

    etag, content, version = await run_in_threadpool(load)
    headers = {"ETag": etag, MODEL_VERSION_HEADER: str(version)}
    if content is None:
        return Response(status_code=304, headers=headers)
    return Response(content, media_type="application/octet-stream", headers=headers)

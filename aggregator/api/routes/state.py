"""Shared-state download: the gate plus a device's groups' adapters, versioned, with ETag."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from aggregator.api.deps import ReaderDep, RuntimeDep
from aggregator.schemas import error_responses
from aggregator.services.bank import StateDownload
from fedpa.errors import PayloadError
from fedpa.wire import GROUPS_PARAM, MODEL_VERSION_HEADER, STATE_VERSION_HEADER

__all__ = ["router"]

router = APIRouter(tags=["state"])

# No OpenAPI example: the attributes are the model's own, so no fixed example is valid for every model
# (the old one, for the KuaiRand bundle, was refused with 422 by any other: a contract mismatch).
_GROUPS = Query(alias=GROUPS_PARAM, max_length=4096, description=(
    "attr:value pairs, comma-separated, naming every grouping attribute of the model's manifest once (e.g. "
    "age:3,region:1); value '*' = every value of the attribute. Devices must send it; the admin may omit it "
    "for the whole bank."))


@router.get("/v1/models/{model_id}/state", responses={
    **error_responses(401, 403, 404, 422),
    200: {"content": {"application/octet-stream": {}}, "description": "safetensors (wire names)"},
    304: {"description": "Not modified (If-None-Match matched the ETag)"}})
async def get_state(model_id: str, request: Request, principal: ReaderDep, runtime: RuntimeDep,
                    groups: Annotated[str | None, _GROUPS] = None) -> Response:
    """Current shared tensors; headers ``X-FedPA-State-Version``, ``X-FedPA-Model-Version``, ``ETag``."""
    def load() -> StateDownload:
        with runtime.db.sessions() as session:
            info, state_version = runtime.catalog.snapshot(session, model_id)
            if groups is None and not principal.admin:
                raise PayloadError("devices must name their groups: ?groups=attr:value,…")
            selection = info.spec.parse_selection(groups) if groups is not None else None
            return runtime.states.get(session, info, state_version, selection)

    download = await run_in_threadpool(load)
    headers = {"ETag": download.etag, STATE_VERSION_HEADER: str(download.state_version),
               MODEL_VERSION_HEADER: str(download.model_version)}
    if request.headers.get("if-none-match") == download.etag:
        runtime.metrics.state_downloads.labels(model_id, "304").inc()
        return Response(status_code=304, headers=headers)
    runtime.metrics.state_downloads.labels(model_id, "200").inc()
    return Response(download.body, media_type="application/octet-stream", headers=headers)

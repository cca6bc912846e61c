"""Update upload: safetensors deltas with ``fedpa.update`` metadata → 202 once committed."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from aggregator.api.deps import DeviceDep
from aggregator.api.direct import DirectRoute
from aggregator.schemas import UpdateAccepted, error_responses
from aggregator.services.runtime import Runtime

__all__ = ["router"]

router = APIRouter(tags=["updates"], route_class=DirectRoute)  # the hot path: see api/direct.py

_ERRORS = error_responses(401, 403, 404, 409, 413, 422, 429, 503)
_BODY = {"requestBody": {"required": True, "content": {"application/octet-stream": {"schema": {
    "type": "string", "format": "binary",
    "description": "safetensors of the deltas (wire names); __metadata__['fedpa.update'] = UpdateMeta JSON"}}}}}


@router.post("/v1/models/{model_id}/updates", status_code=202, response_model=UpdateAccepted,
             responses=_ERRORS, openapi_extra=_BODY)
async def upload_update(model_id: str, request: Request, device: DeviceDep) -> Response:
    """Validate and store one update; the 202 comes after the commit, so it survives a crash."""
    runtime: Runtime = request.app.state.runtime
    body = await request.body()
    receipt = await runtime.intake.submit(device, model_id, body)
    runtime.metrics.accepted(model_id, len(body))
    runtime.scheduler.notify()
    # A plain JSONResponse: skips re-validating our own receipt on the hottest route.
    return JSONResponse(receipt.model_dump(), status_code=202)

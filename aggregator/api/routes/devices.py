"""Device registration: a fresh identity and a bearer token scoped to one model."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, status
from starlette.concurrency import run_in_threadpool

from aggregator.api.deps import RuntimeDep
from aggregator.core.errors import Unauthorized
from aggregator.schemas import DeviceCreate, DeviceCreated, ErrorBody
from aggregator.services.devices import register_device

__all__ = ["router"]

router = APIRouter(tags=["devices"])


@router.post("/v1/devices", status_code=status.HTTP_201_CREATED, response_model=DeviceCreated,
             responses={401: {"model": ErrorBody}, 404: {"model": ErrorBody}, 422: {"model": ErrorBody}})
async def create_device(body: DeviceCreate, request: Request, runtime: RuntimeDep) -> DeviceCreated:
    """Register a device for ``model_id``. With FEDPA_REGISTRATION_KEY set, send it as bearer token."""
    key = runtime.settings.registration_key
    if key is not None:
        sent = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(sent.encode(), key.get_secret_value().encode()):
            raise Unauthorized("registration needs the registration key as bearer token", code="invalid_token")
    return await run_in_threadpool(register_device, runtime.db, body.model_id,
                                   burst=runtime.settings.rate_limit_burst)

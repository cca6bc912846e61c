"""Device registration (per the enrollment mode), token rotation, and admin-issued enrollment keys."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, status
from starlette.concurrency import run_in_threadpool

from aggregator.api.deps import AdminDep, DeviceDep, RuntimeDep
from aggregator.core.errors import Unauthorized
from aggregator.schemas import DeviceCreate, DeviceCreated, EnrollmentKeyCreate, EnrollmentKeyCreated, error_responses
from aggregator.services.devices import is_enrollment_key, issue_enrollment_key, register_device, rotate_token
from aggregator.services.runtime import Runtime
from fedpa.wire import ErrorCode

__all__ = ["router"]

router = APIRouter(tags=["devices"])
_ERRORS = error_responses(400, 401, 403, 404, 422, 429)


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def _enrollment_key(runtime: Runtime, sent: str | None) -> str | None:
    """Who may register: None (admin, static key, open mode) or an issued key to spend; else 401/403."""
    settings = runtime.settings
    admin = settings.admin_token.get_secret_value() if settings.admin_token else None
    if sent is not None and admin and _same(sent, admin):
        return None
    mode = settings.enrollment_mode
    if mode == "open":
        return None
    if mode == "admin-issued":
        raise Unauthorized("devices are registered by the admin here (FEDPA_ENROLLMENT=admin-issued): send the "
                           "admin token", code=ErrorCode.ADMIN_ONLY)
    static = settings.registration_key.get_secret_value() if settings.registration_key else None
    if sent is not None and static and _same(sent, static):
        return None
    if sent is not None and is_enrollment_key(sent):
        return sent
    raise Unauthorized("registration needs an enrollment key as bearer token (ask the admin: "
                       "POST /v1/enrollment-keys)", code=ErrorCode.INVALID_ENROLLMENT_KEY)


@router.post("/v1/devices", status_code=status.HTTP_201_CREATED, response_model=DeviceCreated, responses=_ERRORS)
async def create_device(body: DeviceCreate, request: Request, runtime: RuntimeDep) -> DeviceCreated:
    """Register a device for ``model_id``. Bearer token by FEDPA_ENROLLMENT: ``open`` none, ``enrollment-key``
    an enrollment key, ``admin-issued`` the admin token. 400 for a body that is not JSON."""
    key = _enrollment_key(runtime, _bearer(request))
    settings = runtime.settings
    return await run_in_threadpool(
        lambda: register_device(runtime.db, body.model_id, burst=settings.rate_limit_burst,
                                token_ttl_s=settings.token_ttl_s, enrollment_key=key,
                                enrollment_rate_per_minute=settings.enrollment_rate_per_minute,
                                enrollment_burst=settings.enrollment_burst))


@router.post("/v1/devices/token", response_model=DeviceCreated, responses=_ERRORS)
async def rotate(device: DeviceDep, runtime: RuntimeDep) -> DeviceCreated:
    """A device: replace its token by a fresh one (new expiry); the old one stops working within
    ``token_cache_s``. Rotate before ``expires_at``."""
    return await run_in_threadpool(lambda: rotate_token(runtime.db, device, token_ttl_s=runtime.settings.token_ttl_s))


@router.post("/v1/enrollment-keys", status_code=status.HTTP_201_CREATED, response_model=EnrollmentKeyCreated,
             responses=_ERRORS)
async def create_enrollment_key(body: EnrollmentKeyCreate, _: AdminDep, runtime: RuntimeDep) -> EnrollmentKeyCreated:
    """Admin: a key letting up to ``max_devices`` devices of ``model_id`` register (rate-limited per key)."""
    return await run_in_threadpool(
        lambda: issue_enrollment_key(runtime.db, body.model_id, max_devices=body.max_devices, ttl_s=body.ttl_s,
                                     burst=runtime.settings.enrollment_burst))

"""Dependencies: the app's database and caches, and authentication — in one place.

Auth lives here alone: ``Authenticate`` (admin routes, and admin-or-device routes) and
``AuthenticateDevice`` (device-only routes, which receive the ``DeviceAuth`` itself) read the
bearer token once and answer for admin (constant-time compare with ``FEDPA_ADMIN_TOKEN``) or
device (sha256 lookup, cached per worker; an expired token is 401 ``token_expired``). A device
token only opens routes of its own model (403 otherwise). A database failure during the lookup
is a 503 (core/errors.py).
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.security.base import SecurityBase
from starlette.concurrency import run_in_threadpool

from aggregator.core.errors import ForbiddenError, Unauthorized
from aggregator.services.devices import DeviceAuth, hash_token
from aggregator.services.runtime import Runtime
from fedpa.wire import ErrorCode

__all__ = [
    "AdminDep",
    "Authenticate",
    "AuthenticateDevice",
    "DeviceDep",
    "Principal",
    "ReaderDep",
    "RuntimeDep",
    "get_runtime",
]

@dataclass(frozen=True)
class Principal:
    """Who is calling: the admin, or one device (scoped to ``device.model_id``)."""

    admin: bool = False
    device: DeviceAuth | None = None


def get_runtime(request: Request) -> Runtime:
    """The worker's runtime (database, caches, metrics), built once by the app factory."""
    runtime: Runtime = request.app.state.runtime
    return runtime


def _token(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("missing bearer token (Authorization: Bearer <token>)", code=ErrorCode.MISSING_TOKEN)
    return token


def _is_admin(runtime: Runtime, token: str) -> bool:
    admin_token = runtime.settings.admin_token
    return admin_token is not None and hmac.compare_digest(token.encode(), admin_token.get_secret_value().encode())


async def _device(runtime: Runtime, token: str) -> DeviceAuth:
    """The device holding ``token``: 401 for an unknown, revoked or expired one."""
    cache = runtime.tokens
    token_hash = hash_token(token)
    hit, device = cache.cached(token_hash)
    if not hit:
        device = await run_in_threadpool(cache.lookup, token_hash)
    if device is None:
        raise Unauthorized("invalid or revoked token", code=ErrorCode.INVALID_TOKEN)
    if device.expired(time.time()):
        raise Unauthorized("this device token has expired; register again (rotate before expires_at)",
                           code=ErrorCode.TOKEN_EXPIRED)
    return device


def _check_scope(request: Request, device: DeviceAuth) -> None:
    model_id = request.path_params.get("model_id")
    if model_id is not None and model_id != device.model_id:
        raise ForbiddenError(f"this device token is scoped to model {device.model_id!r}, not {model_id!r}",
                             code=ErrorCode.WRONG_MODEL)


class _Bearer(SecurityBase):
    """The bearer scheme as OpenAPI documents it; subclasses are the dependency itself.

    A ``SecurityBase`` (FastAPI reads only ``model`` and ``scheme_name``) rather than a sub-dependency
    of ``HTTPBearer``, so each request resolves a single dependency — FastAPI's per-dependency cost is
    measurable on the upload path — and ``__call__`` may return our principal, not credentials.
    """

    def __init__(self) -> None:
        self.model = HTTPBearerModel(
            description="Admin token (FEDPA_ADMIN_TOKEN) or a device token from POST /v1/devices")
        self.scheme_name = "bearer"  # one scheme in OpenAPI for every route


class Authenticate(_Bearer):
    """Routes for the admin, and with ``device`` for devices too (each only for its own model)."""

    def __init__(self, *, device: bool) -> None:
        super().__init__()
        self.device = device

    async def __call__(self, request: Request) -> Principal:
        runtime: Runtime = request.app.state.runtime
        token = _token(request)
        if _is_admin(runtime, token):
            return Principal(admin=True)
        device = await _device(runtime, token)
        if not self.device:
            raise ForbiddenError("this route needs the admin token", code=ErrorCode.ADMIN_ONLY)
        _check_scope(request, device)
        return Principal(device=device)


class AuthenticateDevice(_Bearer):
    """Device-only routes: the route receives the ``DeviceAuth`` itself, scoped to its model."""

    async def __call__(self, request: Request) -> DeviceAuth:
        runtime: Runtime = request.app.state.runtime
        token = _token(request)
        if _is_admin(runtime, token):
            raise ForbiddenError("this route is for devices; the admin token cannot use it", code=ErrorCode.DEVICE_ONLY)
        device = await _device(runtime, token)
        _check_scope(request, device)
        return device


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
AdminDep = Annotated[Principal, Depends(Authenticate(device=False))]
DeviceDep = Annotated[DeviceAuth, Depends(AuthenticateDevice())]
ReaderDep = Annotated[Principal, Depends(Authenticate(device=True))]

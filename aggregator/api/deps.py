"""Dependencies: the app's database and caches, and authentication — in one place.

``Authenticate`` is the one auth dependency: it reads the bearer token once and answers for
admin (constant-time compare with ``FEDPA_ADMIN_TOKEN``) or device (sha256 lookup, cached per
worker; an expired token is 401 ``token_expired``). A device token only opens routes of its own
model (403 otherwise). A database failure during the lookup is a 503 (core/errors.py).
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPBearer
from starlette.concurrency import run_in_threadpool

from aggregator.core.errors import ForbiddenError, Unauthorized
from aggregator.services.devices import DeviceAuth, hash_token
from aggregator.services.runtime import Runtime
from fedpa.wire import ErrorCode

__all__ = [
    "AdminDep",
    "Authenticate",
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


class Authenticate(HTTPBearer):
    """Bearer-token auth for routes that accept the admin, devices, or both.

    A ``HTTPBearer`` itself (not a sub-dependency of one), so OpenAPI documents the scheme while
    each request resolves a single dependency — FastAPI's per-dependency cost is measurable on
    the upload path.
    """

    def __init__(self, *, admin: bool, device: bool) -> None:
        super().__init__(scheme_name="bearer", auto_error=False,
                         description="Admin token (FEDPA_ADMIN_TOKEN) or a device token from POST /v1/devices")
        self.admin = admin
        self.device = device

    # The override returns our principal, not HTTPBearer's credentials: routes depend on it directly.
    async def __call__(self, request: Request) -> Principal:  # type: ignore[override]
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("missing bearer token (Authorization: Bearer <token>)", code=ErrorCode.MISSING_TOKEN)
        runtime: Runtime = request.app.state.runtime
        settings = runtime.settings
        admin_token = settings.admin_token.get_secret_value() if settings.admin_token else None
        if admin_token and hmac.compare_digest(token.encode(), admin_token.encode()):
            if self.admin:
                return Principal(admin=True)
            raise ForbiddenError("this route is for devices; the admin token cannot use it", code=ErrorCode.DEVICE_ONLY)
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
        if not self.device:
            raise ForbiddenError("this route needs the admin token", code=ErrorCode.ADMIN_ONLY)
        model_id = request.path_params.get("model_id")
        if model_id is not None and model_id != device.model_id:
            raise ForbiddenError(f"this device token is scoped to model {device.model_id!r}, not {model_id!r}",
                                 code=ErrorCode.WRONG_MODEL)
        return Principal(device=device)


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
AdminDep = Annotated[Principal, Depends(Authenticate(admin=True, device=False))]
DeviceDep = Annotated[Principal, Depends(Authenticate(admin=False, device=True))]
ReaderDep = Annotated[Principal, Depends(Authenticate(admin=True, device=True))]

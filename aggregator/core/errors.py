"""The API's refusals and the ONE handler that turns any of them into ``{"error", "detail"}``.

``error`` is always a ``fedpa.wire.ErrorCode``: the codes are the wire contract clients match on.

Services raise ``fedpa.errors`` exceptions (``PayloadError`` for bad tensors, ``BundleError`` for a
bad bundle) or the HTTP-flavoured subclasses below; routes never build error responses themselves.
FastAPI's own validation errors and Starlette's 404/405 go through the same handler, so a client
sees one error shape for every refusal. So do database failures (``STORAGE_ERRORS``): whatever
route met them — a token look-up, a registration, a download — the client gets 503 with
Retry-After, never a bare 500.
"""

from __future__ import annotations

import logging
import sqlite3

import psycopg
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from fedpa.errors import BundleError, ConfigError, FedPAError, PayloadError
from fedpa.wire import ErrorCode

__all__ = [
    "STORAGE_ERRORS",
    "ApiError",
    "ConflictError",
    "ForbiddenError",
    "NotFoundError",
    "PayloadTooLarge",
    "RateLimited",
    "ServiceUnavailable",
    "Unauthorized",
    "Unprocessable",
    "error_response",
    "handle_error",
    "is_upload",
    "rejection_reason",
]

log = logging.getLogger(__name__)


class ApiError(FedPAError):
    """A refusal with its HTTP status and a stable machine-readable code."""

    status_code = 400
    code: ErrorCode = ErrorCode.BAD_REQUEST

    def __init__(self, detail: str, *, code: ErrorCode | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        self.headers = headers or {}


class Unauthorized(ApiError):
    status_code = 401
    code = ErrorCode.UNAUTHORIZED

    def __init__(self, detail: str, *, code: ErrorCode | None = None) -> None:
        super().__init__(detail, code=code, headers={"WWW-Authenticate": "Bearer"})


class ForbiddenError(ApiError):
    status_code = 403
    code = ErrorCode.FORBIDDEN


class NotFoundError(ApiError):
    status_code = 404
    code = ErrorCode.NOT_FOUND


class ConflictError(ApiError):
    """409: wrong model version, stale base version or replayed nonce (``code`` says which)."""

    status_code = 409
    code = ErrorCode.CONFLICT


class Unprocessable(ApiError):
    """422 for a well-formed request the server will not accept (e.g. weaker privacy than required)."""

    status_code = 422
    code = ErrorCode.UNPROCESSABLE


class PayloadTooLarge(ApiError):
    status_code = 413
    code = ErrorCode.PAYLOAD_TOO_LARGE


def _retry_after(seconds: float) -> dict[str, str]:
    """The Retry-After header: whole seconds, rounded up, at least 1."""
    return {"Retry-After": str(max(1, int(seconds + 0.999)))}


class RateLimited(ApiError):
    status_code = 429
    code = ErrorCode.RATE_LIMITED

    def __init__(self, detail: str, *, retry_after_s: float) -> None:
        super().__init__(detail, headers=_retry_after(retry_after_s))


class ServiceUnavailable(ApiError):
    """503: nothing was stored and the request may be retried (queue full, database failing)."""

    status_code = 503
    code = ErrorCode.UNAVAILABLE

    def __init__(self, detail: str, *, code: ErrorCode | None = None, retry_after_s: float = 1.0) -> None:
        super().__init__(detail, code=code, headers=_retry_after(retry_after_s))


# The database (or its driver, used directly on the hot paths) failed: the request may be retried.
STORAGE_ERRORS: tuple[type[Exception], ...] = (SQLAlchemyError, psycopg.Error, sqlite3.Error)

# fedpa.errors outside the ApiError branch → (status, code).
_CORE_ERRORS: tuple[tuple[type[FedPAError], int, ErrorCode], ...] = (
    (PayloadError, 422, ErrorCode.INVALID_PAYLOAD),
    (BundleError, 422, ErrorCode.INVALID_BUNDLE),
    (ConfigError, 422, ErrorCode.INVALID_CONFIG),
)


def _classify(exc: Exception) -> tuple[int, ErrorCode, str, dict[str, str]]:
    if isinstance(exc, ApiError):
        return exc.status_code, exc.code, exc.detail, exc.headers
    for cls, status, code in _CORE_ERRORS:
        if isinstance(exc, cls):
            return status, code, str(exc), {}
    if isinstance(exc, FedPAError):
        return 400, ErrorCode.BAD_REQUEST, str(exc), {}
    if isinstance(exc, STORAGE_ERRORS):
        return 503, ErrorCode.STORAGE_UNAVAILABLE, "the database is unavailable; retry shortly", _retry_after(1.0)
    if isinstance(exc, RequestValidationError):
        parts = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in exc.errors()]
        return 422, ErrorCode.INVALID_REQUEST, "; ".join(parts) or "invalid request", {}
    if isinstance(exc, StarletteHTTPException):
        if exc.status_code == 400:  # FastAPI's only 400: a JSON body it could not parse (bad UTF-8, too deep)
            return 400, ErrorCode.INVALID_JSON, "the request body is not valid JSON (UTF-8, nesting)", {}
        code = {404: ErrorCode.NOT_FOUND, 405: ErrorCode.METHOD_NOT_ALLOWED}.get(exc.status_code, ErrorCode.HTTP_ERROR)
        return exc.status_code, code, str(exc.detail), dict(exc.headers or {})
    raise TypeError(f"not an error the API maps: {type(exc).__name__}")  # pragma: no cover


def rejection_reason(exc: Exception) -> ErrorCode:
    """The metrics label of a refused upload (the error code)."""
    return _classify(exc)[1]


def error_response(exc: Exception) -> JSONResponse:
    status, code, detail, headers = _classify(exc)
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


async def handle_error(request: Request, exc: Exception) -> JSONResponse:
    """The one exception handler, registered for FedPAError, validation errors and HTTP errors."""
    response = error_response(exc)
    if response.status_code == 405:
        response.headers["Allow"] = _allowed(request)
    if isinstance(exc, STORAGE_ERRORS):
        log.error("%s %s: database failure: %s", request.method, request.url.path, exc)
    elif response.status_code >= 500:  # pragma: no cover - only unexpected HTTPExceptions
        log.error("%s %s failed: %s", request.method, request.url.path, exc)
    runtime = getattr(request.app.state, "runtime", None)
    if runtime is not None and is_upload(request.method, request.url.path):
        runtime.metrics.rejected(rejection_reason(exc))
    return response


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def _allowed(request: Request) -> str:
    """Every method some route serves at this path (Starlette's 405 names only the first route's)."""
    routes = request.app.router.routes
    return ", ".join(m for m in _METHODS
                     if any(r.matches({**request.scope, "method": m})[0] == Match.FULL for r in routes))


def is_upload(method: str, path: str) -> bool:
    """Whether a request is an update upload (its refusals are counted by reason)."""
    return method == "POST" and path.startswith("/v1/models/") and path.endswith("/updates")

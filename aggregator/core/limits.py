"""Request body size and time limits, enforced before the app reads a body (pure ASGI middleware).

A declared ``Content-Length`` over the limit is refused at once; a chunked body is counted as it
streams and refused the moment it passes the limit. Either way the client gets 413 with the
usual ``{"error", "detail"}`` body and nothing was stored. A body that has not fully arrived
``timeout_s`` after the request started gets 408: a slow client cannot hold a worker's memory
and a connection for ever (uvicorn itself has no body timeout).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aggregator.core.errors import ApiError, PayloadTooLarge, error_response
from fedpa.wire import ErrorCode

__all__ = ["BodyLimit"]


class _TooLarge(Exception):
    pass


class _TooSlow(Exception):
    pass


class BodyTimeout(ApiError):
    status_code = 408
    code = ErrorCode.BODY_TIMEOUT


class BodyLimit:
    """413 for bodies over ``limit_for(path)`` bytes, 408 for bodies slower than ``timeout_s``;
    ``on_refuse(method, path, code)`` counts them."""

    def __init__(self, app: ASGIApp, *, limit_for: Callable[[str], int],
                 on_refuse: Callable[[str, str, str], None] | None = None, timeout_s: float = 30.0) -> None:
        self.app = app
        self.limit_for = limit_for
        self.on_refuse = on_refuse
        self.timeout_s = timeout_s

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, error: ApiError) -> None:
        if self.on_refuse is not None:
            self.on_refuse(scope["method"], scope["path"], error.code)
        await error_response(error)(scope, receive, send)

    def _too_large(self, limit: int, size: str) -> ApiError:
        return PayloadTooLarge(f"request body of {size} bytes exceeds the limit of {limit} bytes")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(scope, receive, send, self._too_large(limit, declared.decode()))
            return
        counted = declared is None or not declared.isdigit()  # the server reads no more than Content-Length
        deadline = time.monotonic() + self.timeout_s
        seen = 0
        failure: ApiError | None = None
        started = False

        async def guarded_receive() -> Message:
            nonlocal seen, failure
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    message = await receive()
            except TimeoutError:
                failure = BodyTimeout(f"the request body did not arrive within {self.timeout_s:g} s")
                raise _TooSlow from None
            if counted and message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    failure = self._too_large(limit, f"more than {limit}")
                    raise _TooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if failure is not None:  # the app answered an error of its own to our exception: replace it
                return
            started = True
            await send(message)

        try:
            await self.app(scope, guarded_receive, guarded_send)
        except (_TooLarge, _TooSlow):
            pass
        if failure is not None and not started:
            await self._refuse(scope, receive, send, failure)

"""Request body size limits, enforced before the app reads a body (pure ASGI middleware).

A declared ``Content-Length`` over the limit is refused at once; a chunked body is counted as it
streams and refused the moment it passes the limit. Either way the client gets 413 with the
usual ``{"error", "detail"}`` body and nothing was stored.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aggregator.core.errors import PayloadTooLarge, error_response

__all__ = ["BodyLimit"]


class _TooLarge(Exception):
    pass


class BodyLimit:
    """413 for bodies over ``limit_for(path)`` bytes; ``on_refuse(method, path)`` counts them."""

    def __init__(self, app: ASGIApp, *, limit_for: Callable[[str], int],
                 on_refuse: Callable[[str, str], None] | None = None) -> None:
        self.app = app
        self.limit_for = limit_for
        self.on_refuse = on_refuse

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, limit: int, size: str) -> None:
        if self.on_refuse is not None:
            self.on_refuse(scope["method"], scope["path"])
        response = error_response(PayloadTooLarge(f"request body of {size} bytes exceeds the limit of {limit} bytes"))
        await response(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None and declared.isdigit():
            if int(declared) > limit:
                await self._refuse(scope, receive, send, limit, declared.decode())
                return
            await self.app(scope, receive, send)  # the server reads no more than Content-Length
            return
        seen = 0
        refused = False
        started = False

        async def counting_receive() -> Message:
            nonlocal seen, refused
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    refused = True
                    raise _TooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:  # the app answered an error of its own to our exception: replace it
                return
            started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except _TooLarge:
            pass
        if refused and not started:
            await self._refuse(scope, receive, send, limit, f"more than {limit}")

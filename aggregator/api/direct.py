"""``DirectRoute``: an APIRoute that resolves its own, deliberately simple signature.

FastAPI's general dependency resolver costs ~0.3 ms of CPU per request (profiled with py-spy on
the upload path: a quarter of the worker's CPU), which matters on the route that must sustain
~1,000 uploads/s on two cores. A route using this class may only take path parameters (``str``),
the ``Request`` and dependencies that are async callables of the request (our ``AuthenticateDevice``).
Those are resolved here, by the same objects FastAPI would call, and OpenAPI is still generated
from the endpoint's signature, so documentation and behaviour stay one thing. FastAPI documents
custom ``APIRoute`` classes as the extension point for this.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

__all__ = ["DirectRoute"]


class DirectRoute(APIRoute):
    """Calls ``endpoint(**path_params, request=..., <dep>=await dep(request))`` without FastAPI's resolver."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint = self.endpoint
        if not inspect.iscoroutinefunction(endpoint):
            raise TypeError(f"DirectRoute needs an async endpoint, got {endpoint!r}")
        path_names = [p.name for p in self.dependant.path_params]
        if self.dependant.query_params or self.dependant.header_params or self.dependant.body_params:
            raise TypeError(f"DirectRoute endpoint {endpoint.__name__} may take only path parameters")
        deps: list[tuple[str, Callable[[Request], Awaitable[object]]]] = []
        for sub in self.dependant.dependencies:
            call = sub.call
            fn = call if inspect.isfunction(call) or call is None else type(call).__call__
            if sub.name is None or call is None or not inspect.iscoroutinefunction(fn):
                raise TypeError(f"DirectRoute dependency {sub.name} must be an async callable of the request")
            deps.append((sub.name, call))
        request_name = self.dependant.request_param_name

        async def handler(request: Request) -> Response:
            kwargs: dict[str, object] = {name: request.path_params[name] for name in path_names}
            if request_name:
                kwargs[request_name] = request
            for name, call in deps:
                kwargs[name] = await call(request)
            response: Response = await endpoint(**kwargs)
            return response

        return handler

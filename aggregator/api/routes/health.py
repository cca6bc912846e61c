"""Liveness/readiness (``/healthz``) and Prometheus metrics (``/metrics``); no auth."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from aggregator.api.deps import RuntimeDep
from aggregator.core.metrics import CONTENT_TYPE_LATEST
from aggregator.schemas import Health

__all__ = ["router"]

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, responses={503: {"model": Health}})
async def healthz(runtime: RuntimeDep) -> Response:
    """200 when the database answers, 503 (``degraded``) when it does not."""
    try:
        await run_in_threadpool(runtime.db.ping)
    except SQLAlchemyError as exc:
        return JSONResponse({"status": "degraded", "database": type(exc).__name__}, status_code=503)
    return JSONResponse({"status": "ok", "database": "ok"})


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"}})
async def metrics(runtime: RuntimeDep) -> Response:
    """Prometheus exposition; the sum over all workers when started with several."""
    body = await run_in_threadpool(runtime.metrics.render)
    return Response(body, media_type=CONTENT_TYPE_LATEST)

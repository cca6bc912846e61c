"""Round status for devices and operators, and the admin's "close the round now"."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from aggregator.api.deps import AdminDep, ReaderDep, RuntimeDep
from aggregator.schemas import DeviceStatus, ModelStatus, error_responses
from aggregator.services.status import device_status, list_models, model_status

__all__ = ["router"]

router = APIRouter(tags=["status"])
_ERRORS = error_responses(401, 403, 404)


@router.get("/v1/models", response_model=list[ModelStatus], responses=_ERRORS)
async def all_models(_: AdminDep, runtime: RuntimeDep) -> list[ModelStatus]:
    """Admin: the status of every published model."""
    def collect() -> list[ModelStatus]:
        return [model_status(runtime.db, runtime.catalog, m) for m in list_models(runtime.db)]

    return await run_in_threadpool(collect)


@router.get("/v1/models/{model_id}/status", response_model=ModelStatus | DeviceStatus, responses=_ERRORS)
async def get_status(model_id: str, principal: ReaderDep, runtime: RuntimeDep) -> ModelStatus | DeviceStatus:
    """Admin: versions, the open round, pending devices per group, the last (and last refused) aggregation.
    A device: versions and the open round only (``DeviceStatus``)."""
    if not principal.admin:
        return await run_in_threadpool(device_status, runtime.db, runtime.catalog, model_id)
    return await run_in_threadpool(model_status, runtime.db, runtime.catalog, model_id)


@router.post("/v1/models/{model_id}/aggregate", response_model=ModelStatus, responses=_ERRORS)
async def aggregate_now(model_id: str, _: AdminDep, runtime: RuntimeDep) -> ModelStatus:
    """Admin: close the open round now with whatever arrived (no-op when nothing is pending)."""
    def run() -> ModelStatus:
        with runtime.db.sessions() as session:
            info = runtime.catalog.current(session, model_id)
        runtime.close_round(info.pk, trigger="admin", force=True)
        return model_status(runtime.db, runtime.catalog, model_id)

    return await run_in_threadpool(run)

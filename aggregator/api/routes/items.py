"""Item tables: the admin publishes one per model version; devices look up their candidates' rows.

The lookup is a POST (a batch of ids does not fit a URL) answered with safetensors
(``fedpa.runtime.items.ItemRows``): ``item_code`` int32, ``codes`` uint8 and ``known`` uint8 per
candidate, in request order — unknown items come back with ``known = 0`` and OOV codes, never
as an error, so a brand-new item still ranks.
"""

from __future__ import annotations

import json

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from aggregator.api.deps import AdminDep, ReaderDep, RuntimeDep
from aggregator.core.errors import PayloadTooLarge
from aggregator.schemas import ItemLookup, ItemTableStatus, error_responses
from aggregator.services.items import MAX_LOOKUP_BATCH, ItemTableInfo, publish_item_table
from fedpa.wire import MODEL_VERSION_HEADER, TABLE_VERSION_HEADER, ErrorCode

__all__ = ["ITEMS_PUBLISH_SUFFIX", "router"]

router = APIRouter(tags=["items"])

ITEMS_PUBLISH_SUFFIX = "/items"  # the publish route's body may be as large as a bundle (main.py's limit)
_ERRORS = error_responses(401, 403, 404)
_SAFETENSORS: dict[str, dict[str, dict[str, str]]] = {"content": {"application/octet-stream": {}}}


def _status(info: ItemTableInfo) -> ItemTableStatus:
    columns = [{k: v for k, v in c.items() if v is not None} for c in json.loads(info.meta_json)["columns"]]
    return ItemTableStatus(model_id=info.model_id, model_version=info.model_version,
                           table_version=info.table_version, n_items=info.n_items, sha256=info.sha256,
                           columns=columns, max_lookup_batch=MAX_LOOKUP_BATCH, created_at=info.created_at)


@router.post("/v1/models/{model_id}/items", status_code=201, response_model=ItemTableStatus,
             responses=error_responses(401, 403, 404, 409, 413, 422),
             openapi_extra={"requestBody": {"required": True, **_SAFETENSORS}})
async def publish(model_id: str, request: Request, _: AdminDep, runtime: RuntimeDep) -> ItemTableStatus:
    """Admin: publish an item table (``fedpa-export items`` output) for the model's current version."""
    body = await request.body()
    info = await run_in_threadpool(publish_item_table, runtime.db, model_id, body)
    return _status(info)


@router.get("/v1/models/{model_id}/items", response_model=ItemTableStatus,
            responses={**_ERRORS, 200: {"description": "the current item table's version and columns"}})
async def status(model_id: str, _: ReaderDep, runtime: RuntimeDep) -> ItemTableStatus:
    """The table served now: devices compare ``table_version`` with their cache's."""
    def load() -> ItemTableInfo:
        with runtime.db.sessions() as session:
            return runtime.item_tables.info(session, model_id)[1]

    return _status(await run_in_threadpool(load))


@router.post("/v1/models/{model_id}/items/lookup",
             responses={**error_responses(401, 403, 404, 400, 413, 422, 429),
                        200: {**_SAFETENSORS, "description": "ItemRows safetensors, one row per id, in order"}})
async def lookup(model_id: str, body: ItemLookup, principal: ReaderDep, runtime: RuntimeDep) -> Response:
    """Rows for a batch of candidates; headers ``X-FedPA-Table-Version``, ``X-FedPA-Model-Version``.

    400 ``invalid_json`` for a body that is not JSON (as on every JSON route); 429 ``rate_limited``
    with ``Retry-After`` past the device's lookup bucket (``LOOKUP_RATE_PER_MINUTE``; the admin
    is not limited)."""
    if principal.device is not None:  # before any work: a flood costs the server a dict update per request
        runtime.lookup_limits.take(principal.device.pk)
    if len(body.item_ids) > MAX_LOOKUP_BATCH:
        raise PayloadTooLarge(f"{len(body.item_ids)} item ids in one lookup; at most {MAX_LOOKUP_BATCH} — "
                              "split the candidates into batches", code=ErrorCode.LOOKUP_BATCH_TOO_LARGE)

    def load() -> tuple[bytes, int, int]:
        with runtime.db.sessions() as session:
            table = runtime.item_tables.current(session, model_id)
        rows = table.lookup(body.item_ids)
        return rows.encode(), table.meta.table_version, table.meta.model_version

    content, table_version, model_version = await run_in_threadpool(load)
    return Response(content, media_type="application/octet-stream",
                    headers={TABLE_VERSION_HEADER: str(table_version),
                             MODEL_VERSION_HEADER: str(model_version)})

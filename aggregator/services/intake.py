"""Update intake: validate an upload on the event loop, then hand it to the group committer.

The upload path in three parts, one module each: ``validation`` decides everything that needs no
database (the header, the metadata, number ranges, tensors, declared privacy); ``intake_sql`` is
the transaction deciding the rest (the base version is current (sync) or not too stale (async),
the nonce is new, the device's bucket holds a token); ``committer`` runs that transaction for
every upload queued meanwhile and answers each its own verdict. This module joins them.

A batch cannot fail because of one upload's content (validation refuses whatever the INSERT could
fail on), only because the database failed (503 for all of it). A refused upload still costs the
device a rate-limit token, taken in the next batch's transaction, so garbage is throttled like
volume.

Usage: ``receipt = await intake.submit(device, "m1", body)``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from anyio import to_thread

from aggregator.core.errors import ServiceUnavailable, Unprocessable
from aggregator.db import Database
from aggregator.schemas import UpdateAccepted
from aggregator.services.catalog import Catalog, ModelInfo
from aggregator.services.committer import Committer
from aggregator.services.devices import DeviceAuth
from aggregator.services.intake_sql import Limits, PendingUpdate
from aggregator.services.validation import check_ranges, check_update
from fedpa.errors import FedPAError
from fedpa.wire import ErrorCode, decode_update

__all__ = ["Intake", "Limits"]


class Intake:
    """The upload path of one worker: validate on the event loop, then group-commit (``Committer``).

    The keyword arguments other than ``max_metadata_bytes`` configure the committer (batch size,
    number of committers, queue bounds, commit delay); see ``Committer`` for what each trades.
    """

    def __init__(self, db: Database, catalog: Catalog, limits: Limits, *, max_batch: int = 64,
                 committers: int = 1, max_queue: int = 4096, max_queue_bytes: int = 64 << 20,
                 commit_delay_s: float = 0.0, max_metadata_bytes: int = 16384) -> None:
        self.db = db
        self.catalog = catalog
        self.limits = limits
        self.max_metadata_bytes = max_metadata_bytes
        self.committer = Committer(db, limits, max_batch=max_batch, committers=committers, max_queue=max_queue,
                                   max_queue_bytes=max_queue_bytes, commit_delay_s=commit_delay_s)

    @property
    def on_batch(self) -> Callable[[int], None] | None:
        """Called with each committed batch's size (metrics)."""
        return self.committer.on_batch

    @on_batch.setter
    def on_batch(self, hook: Callable[[int], None] | None) -> None:
        self.committer.on_batch = hook

    @property
    def queued_bytes(self) -> int:
        """Bytes of upload bodies waiting for a transaction."""
        return self.committer.queued_bytes

    def _version(self, model_id: str, model_version: int) -> ModelInfo:
        with self.db.sessions() as session:
            return self.catalog.version(session, model_id, model_version)

    async def submit(self, device: DeviceAuth, model_id: str, body: bytes) -> UpdateAccepted:
        """Validate one upload and return its receipt once committed; raises a FedPAError (→ 4xx/503) on refusal."""
        try:
            meta, arrays = decode_update(body, max_metadata_bytes=self.max_metadata_bytes)
            if meta.model_id != model_id:
                raise Unprocessable(f"metadata model_id {meta.model_id!r} does not match the URL's {model_id!r}",
                                    code=ErrorCode.MODEL_ID_MISMATCH)
            check_ranges(meta)  # before the catalog: a version of 2^31 is out of range, not merely unknown
            info = self.catalog.cached(model_id, meta.model_version)
            if info is None:
                info = await to_thread.run_sync(self._version, model_id, meta.model_version)
            check_update(info, meta, arrays)
        except FedPAError as exc:
            if self.limits.per_minute <= 0 or isinstance(exc, ServiceUnavailable):
                raise
            # A refusal costs a token too (in the next batch), so garbage is throttled like volume.
            return await self.committer.commit(PendingUpdate(None, None, device.pk, b"", time.time(), refusal=exc))
        return await self.committer.commit(PendingUpdate(info, meta, device.pk, body, time.time()))

    async def close(self) -> None:
        """Stop the committers (after uvicorn drained the requests, the queue is empty)."""
        await self.committer.close()

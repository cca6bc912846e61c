"""Group commit: one transaction (and one commit) for every upload queued while the last one ran.

Why: one transaction per upload (a thread hop, a pooled connection, three round trips, a commit)
cost a worker more CPU than the HTTP handling and validation together, which capped a worker
near 450 uploads/s. The committer stores every upload queued meanwhile in one transaction
(``intake_sql.store_script``) — on PostgreSQL on the event loop itself, on SQLite in a worker
thread — and hands each waiting request its own verdict. The commit happens before the request
is answered, so an accepted update survives a crash. A batch fails as a whole only when the
database fails (503 for all of it; nothing was stored, the devices may retry).

Usage: ``committer = Committer(db, limits); receipt = await committer.commit(pending)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from anyio import to_thread

from aggregator.core.errors import ServiceUnavailable
from aggregator.db import Database, LoopConnection
from aggregator.schemas import UpdateAccepted
from aggregator.services.intake_sql import Limits, Outcome, PendingUpdate, store_script
from fedpa.errors import FedPAError
from fedpa.wire import ErrorCode

__all__ = ["Committer"]

log = logging.getLogger(__name__)


class Committer:
    """The queue of one worker's validated uploads and the tasks that commit it in batches.

    A committer task takes every upload queued so far (up to ``max_batch``) into one transaction,
    so under load each batch carries what arrived during the previous one and a new upload waits
    at most for one batch to finish. One committer per worker measured best (bigger batches: fewer
    transactions); ``committers`` > 1 overlaps transactions on separate connections. On PostgreSQL
    each committer owns one connection and runs its transactions on the event loop; on SQLite they
    run in a worker thread.
    ``commit_delay_s`` > 0 lets a batch that would be small wait that long for company first: at
    moderate load (500/s) 4 ms cut PostgreSQL's CPU per upload by about a quarter (fewer, larger
    transactions), for up to 4 ms of added latency. More than ``max_queue`` uploads (or
    ``max_queue_bytes`` of their bodies) waiting means the database is not keeping up: new ones get
    503 with Retry-After instead of piling up in memory.
    """

    def __init__(self, db: Database, limits: Limits, *, max_batch: int = 64, committers: int = 1,
                 max_queue: int = 4096, max_queue_bytes: int = 64 << 20, commit_delay_s: float = 0.0) -> None:
        self.db = db
        self.limits = limits
        self.max_batch = max_batch
        self.committers = committers
        self.max_queue = max_queue
        self.max_queue_bytes = max_queue_bytes  # bodies waiting, in bytes; beyond → 503 like max_queue
        self.queued_bytes = 0  # taken off when a committer picks the upload up
        self.commit_delay_s = commit_delay_s
        self._queue: asyncio.Queue[tuple[PendingUpdate, asyncio.Future[UpdateAccepted]]] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.on_batch: Callable[[int], None] | None = None  # batch-size hook (metrics)

    async def commit(self, pending: PendingUpdate) -> UpdateAccepted:
        """Queue one upload; its receipt once committed, or the FedPAError refusing it (503 when full)."""
        if self._queue is None:
            self._start()
        assert self._queue is not None
        if self._queue.qsize() >= self.max_queue or self.queued_bytes + len(pending.body) > self.max_queue_bytes:
            raise ServiceUnavailable(f"{self._queue.qsize()} uploads ({self.queued_bytes} bytes) are waiting for the "
                                     "database; retry shortly", code=ErrorCode.INTAKE_BUSY)
        future: asyncio.Future[UpdateAccepted] = asyncio.get_running_loop().create_future()
        self.queued_bytes += len(pending.body)
        self._queue.put_nowait((pending, future))
        return await future

    def _start(self) -> None:
        self._queue = asyncio.Queue()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._commit_loop(self.db.loop_connection(f"fedpa-intake-{i}")),
                                        name=f"fedpa-intake-{i}") for i in range(self.committers)]

    async def _store(self, connection: LoopConnection | None, batch: list[PendingUpdate]) -> list[Outcome]:
        script = store_script(self.db, batch, limits=self.limits, now=time.time())
        if connection is not None:  # PostgreSQL: on the event loop, no thread hand-off
            return await connection.run(script)
        return await to_thread.run_sync(self.db.run, script)

    async def _commit_loop(self, connection: LoopConnection | None) -> None:
        try:
            await self._commit_batches(connection)
        finally:
            if connection is not None:
                await connection.close()

    async def _commit_batches(self, connection: LoopConnection | None) -> None:
        queue = self._queue
        assert queue is not None
        while True:
            batch = [await queue.get()]
            if self.commit_delay_s > 0 and queue.qsize() < self.max_batch - 1:
                await asyncio.sleep(self.commit_delay_s)
            while len(batch) < self.max_batch and not queue.empty():
                batch.append(queue.get_nowait())
            self.queued_bytes -= sum(len(u.body) for u, _ in batch)
            try:
                outcomes: list[Outcome] | FedPAError = await self._store(connection, [u for u, _ in batch])
            except Exception:  # rolled back: nothing of this batch was stored, the devices may retry
                log.exception("storing a batch of %d uploads failed", len(batch))
                outcomes = ServiceUnavailable("the database did not store this upload; retry shortly",
                                              code=ErrorCode.STORAGE_UNAVAILABLE)
            except BaseException:  # cancelled at shutdown: nobody may wait forever
                for _, future in batch:
                    future.cancel()
                raise
            if self.on_batch is not None:
                self.on_batch(len(batch))
            for i, (_, future) in enumerate(batch):
                if future.done():  # the client went away
                    continue
                outcome = outcomes if isinstance(outcomes, FedPAError) else outcomes[i]
                if isinstance(outcome, FedPAError):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)

    async def close(self) -> None:
        """Stop the committer tasks (after uvicorn drained the requests, the queue is empty)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks, self._queue = [], None

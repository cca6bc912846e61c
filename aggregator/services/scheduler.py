"""Per-worker background task that closes due rounds (size reached, deadline passed).

Uploads never aggregate inline (that would put a long transaction on a device's request); they
``notify()`` this scheduler, which checks at most every ``interval_s`` and otherwise every
``tick_s`` for deadlines. Every worker runs one; ``aggregate_model``'s locks make concurrent
attempts harmless, and a restarted server finds the pending updates in the database and closes
the round on its first tick, so nothing depends on in-memory state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from anyio import to_thread

__all__ = ["Scheduler"]

log = logging.getLogger(__name__)


class Scheduler:
    """Runs ``check()`` (blocking, in a worker thread) when notified or every ``tick_s``."""

    def __init__(self, check: Callable[[], object], *, interval_s: float, tick_s: float) -> None:
        self._check = check
        self._interval_s = interval_s
        self._tick_s = tick_s
        self._wake = asyncio.Event()  # binds to the running loop on first use (Python ≥ 3.10)
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="fedpa-scheduler")

    def notify(self) -> None:
        """Ask for a check soon (call from the event loop)."""
        self._wake.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._tick_s)
            self._wake.clear()
            try:
                await to_thread.run_sync(self._check)
            except Exception:  # keep the worker alive; the next tick retries (state is in the DB)
                log.exception("scheduled aggregation check failed")
            await asyncio.sleep(self._interval_s)

"""Per-worker background task that closes due rounds (size reached, deadline passed).

Uploads never aggregate inline (that would put a long transaction on a device's request); they
``notify()`` this scheduler, which checks at most every ``interval_s`` and otherwise every
``tick_s`` for deadlines. In-worker mode (``serve --aggregation-in-workers``, or an app built
directly) every worker runs one; ``aggregate_model``'s locks make concurrent attempts harmless,
and a restarted server finds the pending updates in the database and closes the round on its
first tick, so nothing depends on in-memory state.

``run_aggregation_loop`` is the same check for a dedicated process (``fedpa-aggregator
aggregate-loop``, which ``serve`` starts by default): aggregating 1,000 updates takes ~0.5 s of
CPU, and inside a serving worker that stalls its requests (the upload latency tail); in a process
of its own it does not hold the workers' interpreter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Callable

from anyio import to_thread

__all__ = ["Scheduler", "run_aggregation_loop"]

log = logging.getLogger(__name__)


class Scheduler:
    """Runs ``check()`` (blocking, in a worker thread) when notified or every ``tick_s``."""

    def __init__(self, check: Callable[[], object], *, interval_s: float, tick_s: float) -> None:
        self._check = check
        self._interval_s = interval_s
        self._tick_s = tick_s
        self._wake = asyncio.Event()  # binds to the running loop on first use (Python ≥ 3.10)
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="fedpa-scheduler")

    def notify(self) -> None:
        """Ask for a check soon (call from the event loop)."""
        self._wake.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._stopping = True  # the loop also ends by itself, should the cancellation be lost
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while not self._stopping:
            # asyncio.timeout, not asyncio.wait_for: on Python 3.11 wait_for swallows a cancel() that
            # lands as the awaited wake-up completes (a notify() just before shutdown), and stop()
            # then waited for this loop forever (seen once in CI as a 600 s hang at app shutdown)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._tick_s):
                    await self._wake.wait()
            if self._stopping:
                return
            self._wake.clear()
            try:
                await to_thread.run_sync(self._check)
            except Exception:  # keep the worker alive; the next tick retries (state is in the DB)
                log.exception("scheduled aggregation check failed")
            await asyncio.sleep(self._interval_s)


def run_aggregation_loop(check: Callable[[], object], *, poll_s: float, stop: threading.Event,
                         parent_pid: int | None = None) -> None:
    """Run ``check()`` every ``poll_s`` seconds until ``stop`` is set (blocking; for its own process).

    Without upload notifications the loop polls; ``due_models`` is one small indexed query. With
    ``parent_pid`` it also stops once that process is no longer its parent (it died, even by SIGKILL).
    """
    while not stop.is_set() and (parent_pid is None or os.getppid() == parent_pid):
        try:
            check()
        except Exception:  # keep polling; the next check retries (state is in the database)
            log.exception("aggregation check failed")
        stop.wait(poll_s)

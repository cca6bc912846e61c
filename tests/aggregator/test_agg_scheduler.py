"""The per-worker round scheduler stops promptly, whatever it was doing (aggregator/services/scheduler.py)."""

from __future__ import annotations

import asyncio

import pytest

from aggregator.services.scheduler import Scheduler


@pytest.mark.parametrize("steps_before_notify", [1, 2, 5])
def test_stop_right_after_a_notify_ends_the_loop(steps_before_notify):
    """An upload's notify() in the same event-loop step as shutdown's stop(): the loop must still end.

    On Python 3.11 an ``asyncio.wait_for`` around the wake-up swallowed exactly this cancellation,
    and the app's shutdown then waited forever (a CI run hung 600 s in TestClient's exit).
    """
    async def scenario() -> float:
        loop = asyncio.get_running_loop()
        scheduler = Scheduler(lambda: None, interval_s=0.0, tick_s=0.05)
        scheduler.start()
        for _ in range(steps_before_notify):
            await asyncio.sleep(0)  # the loop is now waiting for a wake-up
        (task,) = [t for t in asyncio.all_tasks() if t.get_name() == "fedpa-scheduler"]
        loop.call_later(2.0, task.cancel)  # watchdog: a lost cancellation would otherwise hang the test
        start = loop.time()
        scheduler.notify()
        await scheduler.stop()  # the cancellation lands while the wake-up completes
        assert task.done()
        return loop.time() - start

    assert asyncio.run(scenario()) < 1.0


def test_a_notified_scheduler_runs_its_check_and_a_quiet_one_ticks():
    checks: list[float] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        scheduler = Scheduler(lambda: checks.append(loop.time()), interval_s=0.0, tick_s=0.2)
        scheduler.start()
        await asyncio.sleep(0.05)
        scheduler.notify()
        await asyncio.sleep(0.05)
        assert len(checks) == 1  # the notify, well before the first tick
        await asyncio.sleep(0.3)
        assert len(checks) >= 2  # then the tick, with no notify
        await scheduler.stop()

    asyncio.run(asyncio.wait_for(scenario(), timeout=5))

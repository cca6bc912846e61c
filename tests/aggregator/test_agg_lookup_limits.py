"""The per-device lookup bucket on its own (aggregator/services/lookup_limits.py), on a fake clock."""

from __future__ import annotations

import pytest

from aggregator.core.errors import RateLimited
from aggregator.services.lookup_limits import LookupLimits


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_refill_at_the_rate_per_device():
    clock = Clock()
    limits = LookupLimits(per_minute=60, burst=3, clock=clock)
    for _ in range(3):
        limits.take(1)
    with pytest.raises(RateLimited) as refused:
        limits.take(1)
    limits.take(2)  # another device's bucket is its own
    assert refused.value.status_code == 429 and refused.value.headers == {"Retry-After": "1"}
    clock.now += 1.0  # one token back at 1/s
    limits.take(1)
    with pytest.raises(RateLimited):
        limits.take(1)


def test_a_refused_lookup_does_not_push_the_next_token_further_away():
    clock = Clock()
    limits = LookupLimits(per_minute=60, burst=1, clock=clock)
    limits.take(7)
    for _ in range(50):  # hammering while empty
        with pytest.raises(RateLimited):
            limits.take(7)
    clock.now += 1.0
    limits.take(7)


def test_zero_disables_and_full_buckets_are_forgotten():
    off = LookupLimits(per_minute=0, burst=1)
    for _ in range(5):
        off.take(1)  # never raises
    clock = Clock()
    limits = LookupLimits(per_minute=60, burst=2, clock=clock, max_devices=10)
    for pk in range(10):
        limits.take(pk)
    clock.now += 5.0  # every bucket refilled
    limits.take(99)  # 11 buckets: the refilled ones are dropped
    assert len(limits._buckets) == 1

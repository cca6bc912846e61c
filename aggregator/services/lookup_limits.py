"""Per-device rate limit of item-table lookups: a token bucket per device, in the worker's memory.

Any registered device may be hostile (docs/aggregator.md, threat model). A lookup is a read, so
its bucket is not in the database as the upload buckets are (``intake_sql``): a write per lookup
on the one database would make one device's flood contend with every other device's uploads —
the very harm the limit exists to prevent. The price: each worker keeps its own buckets, so a
device spread over W workers (or hosts) gets at most W times the configured rate; every other
device keeps its own full bucket either way.

Usage: ``buckets = LookupLimits(per_minute=600, burst=120); buckets.take(device_pk)`` (raises 429).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from aggregator.core.errors import RateLimited

__all__ = ["LookupLimits"]


class LookupLimits:
    """Token buckets by device pk; ``per_minute == 0`` disables the limit."""

    def __init__(self, *, per_minute: float, burst: int, clock: Callable[[], float] = time.monotonic,
                 max_devices: int = 100_000) -> None:
        self.per_minute, self.burst = per_minute, burst
        self._rate = per_minute / 60.0
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[int, tuple[float, float]] = {}  # device pk → (tokens, at)
        self._max_devices = max_devices  # past this many buckets, the full ones are dropped

    def take(self, device_pk: int) -> None:
        """One lookup by this device, or 429 ``rate_limited`` with the seconds until its next token."""
        if self.per_minute == 0:
            return
        now = self._clock()
        with self._lock:
            tokens, at = self._buckets.get(device_pk, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self._rate)
            if tokens < 1.0:
                self._buckets[device_pk] = (tokens, now)
                raise RateLimited(f"device rate limit of {self.per_minute:g} item lookups/minute (burst "
                                  f"{self.burst}) exceeded", retry_after_s=(1.0 - tokens) / self._rate)
            self._buckets[device_pk] = (tokens - 1.0, now)
            if len(self._buckets) > self._max_devices:
                self._prune(now)

    def _prune(self, now: float) -> None:
        """Forget buckets that have refilled: a full bucket and no bucket are the same thing."""
        full = [pk for pk, (tokens, at) in self._buckets.items()
                if tokens + (now - at) * self._rate >= self.burst]
        for pk in full:
            del self._buckets[pk]

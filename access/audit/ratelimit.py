"""Client-side pacing of CloudTrail's LookupEvents (2 calls/s per account and region)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateLimiter:
    """A token bucket of capacity one: calls are spaced at least 1/rate seconds apart."""

    def __init__(
        self,
        rate_per_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = 1.0 / rate_per_s
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        """Block until a call may be made."""
        with self._lock:
            now = self._clock()
            at = max(now, self._next)
            self._next = at + self.interval
        if at > now:
            self._sleep(at - now)


# CloudTrail's limit is per account and region, so every collector in the process shares one
# bucket per region.
_LIMITERS: dict[tuple[str, float], RateLimiter] = {}
_LIMITERS_LOCK = threading.Lock()


def limiter_for(region: str, rate_per_s: float) -> RateLimiter:
    """The process-wide limiter for `region` at `rate_per_s` (created on first use)."""
    with _LIMITERS_LOCK:
        return _LIMITERS.setdefault((region, rate_per_s), RateLimiter(rate_per_s))

"""Per-subscription rate limiting: an asyncio token bucket."""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)

# Refill arithmetic is floating point: after sleeping exactly the computed wait the bucket may hold
# 0.9999999 tokens, and a strict >= 1 would then spin on ever tinier sleeps.
_EPSILON = 1e-9


class TokenBucket:
    """``rate_per_s`` acquisitions per second on average, bursts of up to ``burst`` (default max(1, rate))."""

    def __init__(
        self, rate_per_s: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if not rate_per_s > 0:
            raise ValueError("rate_per_s must be positive")
        self.rate = float(rate_per_s)
        self.burst = float(burst) if burst is not None else max(1.0, self.rate)
        if not self.burst >= 1:
            raise ValueError("burst must be at least 1")
        self._clock = clock
        self._tokens = self.burst  # start full: a fresh subscription may send its burst at once
        self._updated = clock()
        # Waiters queue on the lock, so they are served in arrival order rather than racing each tick.
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        """Add the tokens earned since the last refill, up to the burst size."""
        now = self._clock()
        elapsed = max(0.0, now - self._updated)
        self._updated = now
        self._tokens = min(self.burst, self._tokens + elapsed * self.rate)

    def _take(self) -> bool:
        """Take one token if the bucket holds one."""
        if self._tokens >= 1.0 - _EPSILON:
            self._tokens = max(0.0, self._tokens - 1.0)
            return True
        return False

    def try_acquire(self) -> bool:
        """Take a token if one is available now; never waits."""
        if self._lock.locked():
            return False  # someone is already waiting; do not jump the queue
        self._refill()
        return self._take()

    async def acquire(self) -> None:
        """Wait until a token is available and take it."""
        async with self._lock:
            while True:
                self._refill()
                if self._take():
                    return
                await asyncio.sleep((1.0 - self._tokens) / self.rate)

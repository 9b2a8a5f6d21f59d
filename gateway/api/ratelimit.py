"""Per-key token buckets (pure): one runaway agent spends its own budget, never the others'."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["RateLimiter"]


class RateLimiter:
    """``allow(key)``: True while ``key`` has a token; refills at ``rate`` per second up to ``burst``."""

    def __init__(
        self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000
    ) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.clock = clock
        self.max_keys = max_keys
        #: key -> (tokens, at): least recently used first, so the bound drops idle keys.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, key: str) -> bool:
        now = self.clock()
        tokens, at = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        ok = tokens >= 1.0
        self._buckets[key] = (tokens - 1.0 if ok else tokens, now)
        if len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return ok

    def retry_after(self, key: str) -> float:
        """Seconds until ``key`` has a token again."""
        tokens, _at = self._buckets.get(key, (self.burst, 0.0))
        return max(0.0, (1.0 - tokens) / self.rate)

"""Counters the controller exposes on the service API, and rate-limited logging of bad input."""

from __future__ import annotations

import time
from collections import Counter, deque
from typing import Any

__all__ = ["RateLimitedLog", "Stats"]


class Stats:
    """Monotonic counters plus a sliding heartbeats-per-second rate."""

    def __init__(self) -> None:
        self.started = time.time()
        self.received = 0
        self.heartbeats = 0
        self.bad: Counter[str] = Counter()
        self.dropped = 0
        self.writes = 0
        self.write_errors = 0
        self.deletes = 0
        self.audit_events = 0
        self.lifecycle_events = 0
        self.policies = 0
        self.bad_policies = 0
        self.policy_kills = 0
        self.policy_alerts = 0
        self.policy_dry_runs = 0
        self.policy_evaluations = 0
        self.policy_breaches = 0
        self.lease_requests = 0
        self.lease_grants = 0
        self.lease_denials = 0
        self.lease_conflicts = 0
        self.bad_lease_requests = 0
        self._window: deque[tuple[float, int]] = deque(maxlen=6)

    def tick(self, now: float) -> None:
        """Sample the heartbeat counter (call about once a second)."""
        self._window.append((now, self.heartbeats))

    @property
    def rate(self) -> float:
        if len(self._window) < 2:
            return 0.0
        (t0, n0), (t1, n1) = self._window[0], self._window[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "heartbeats_per_s": round(self.rate, 1),
            "received": self.received,
            "heartbeats": self.heartbeats,
            "bad": dict(self.bad),
            "bad_total": sum(self.bad.values()),
            "dropped": self.dropped,
            "writes": self.writes,
            "write_errors": self.write_errors,
            "deletes": self.deletes,
            "audit_events": self.audit_events,
            "lifecycle_events": self.lifecycle_events,
            "policies": self.policies,
            "bad_policies": self.bad_policies,
            "policy_kills": self.policy_kills,
            "policy_alerts": self.policy_alerts,
            "policy_dry_runs": self.policy_dry_runs,
            "policy_evaluations": self.policy_evaluations,
            "policy_breaches": self.policy_breaches,
            "lease_requests": self.lease_requests,
            "lease_grants": self.lease_grants,
            "lease_denials": self.lease_denials,
            "lease_conflicts": self.lease_conflicts,
            "bad_lease_requests": self.bad_lease_requests,
        }


class RateLimitedLog:
    """Log a warning per reason at most once every ``every`` seconds, with the count suppressed."""

    def __init__(self, logger: Any, every: float = 10.0) -> None:
        self._log = logger
        self._every = every
        self._last: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()

    def warning(self, event: str, reason: str, **kw: Any) -> None:
        now = time.monotonic()
        last = self._last.get(reason)
        if last is not None and now - last < self._every:
            self._suppressed[reason] += 1
            return
        self._last[reason] = now
        suppressed = self._suppressed.pop(reason, 0)
        self._log.warning(event, reason=reason, suppressed=suppressed, **kw)

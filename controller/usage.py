"""Per-instance usage samples from heartbeats (pure): what rate windows are measured against."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping

from mesh.protocol.models import Heartbeat

__all__ = ["BASELINE", "UsageSamples"]

#: Time of a first sample: totals an instance already had when we first heard of it (after a
#: controller restart, or restored from its checkpoint) were counted before any window.
BASELINE = float("-inf")
#: Samples kept per window: older ones are merged, so a 1-day window costs no more than a minute's.
RESOLUTION_STEPS = 512


class UsageSamples:
    """(time, totals) samples per instance key, only when the totals changed; no I/O."""

    def __init__(self) -> None:
        self.samples: dict[str, deque[tuple[float, Mapping[str, float]]]] = {}
        self.started: dict[str, float] = {}
        #: Agent URI -> instance keys seen, so that one agent's instances are found without a scan.
        self.by_agent: dict[str, set[str]] = {}
        self.window = 0.0

    def set_window(self, window: float) -> None:
        """The largest window of any policy: how much history to keep."""
        self.window = window

    def observe(self, key: str, hb: Heartbeat, now: float) -> bool:
        """Record ``hb``'s totals if they changed; True if they did (the agent needs evaluating)."""
        usage = hb.usage
        s = self.samples.get(key)
        if s is None:
            self.samples[key] = deque([(BASELINE, usage)])
            self.by_agent.setdefault(hb.agent_uri, set()).add(key)
            if hb.started_at is not None:
                self.started[key] = hb.started_at.timestamp()
            return bool(usage)
        last = s[-1][1]
        if usage == last:
            return False
        if hb.started_at is not None:
            self.started[key] = hb.started_at.timestamp()
        if any(usage.get(name, 0.0) < value for name, value in last.items()):
            # Totals went down: a new process under this id without its checkpoint. Start over.
            s.clear()
            s.append((BASELINE, usage))
            return True
        step = self.window / RESOLUTION_STEPS
        if len(s) >= 2 and s[-1][0] - s[-2][0] < step:
            s[-1] = (now, usage)  # merge: the increment is dated later, which can only count it in
        else:
            s.append((now, usage))
        self._prune(s, now)
        return True

    def _prune(self, s: deque[tuple[float, Mapping[str, float]]], now: float) -> None:
        cutoff = now - self.window
        # Keep the newest sample at or before the cutoff: it is the total at the window's start.
        while len(s) >= 2 and s[1][0] <= cutoff:
            s.popleft()

    def forget(self, live_keys: set[str]) -> None:
        """Drop instances the fleet no longer holds (expired by retention)."""
        for key in [k for k in self.samples if k not in live_keys]:
            del self.samples[key]
            self.started.pop(key, None)
        for agent, keys in list(self.by_agent.items()):
            keys &= live_keys
            if not keys:
                del self.by_agent[agent]

"""The restart decision of a supervisor: restart a crashed part, unless it crashes too often."""

from __future__ import annotations

from collections import deque

__all__ = ["CrashBudget", "describe_exit"]


class CrashBudget:
    """At most ``limit`` crashes within any ``window`` seconds are restarted; one more gives up."""

    def __init__(self, limit: int = 5, window: float = 60.0) -> None:
        if limit < 0 or window <= 0:
            raise ValueError("limit must be >= 0 and window > 0")
        self.limit = limit
        self.window = window
        self._crashes: deque[float] = deque()

    def crash(self, now: float) -> bool:
        """Note a crash at ``now`` (monotonic seconds); True to restart, False to give up."""
        self._crashes.append(now)
        while self._crashes and self._crashes[0] <= now - self.window:
            self._crashes.popleft()
        return len(self._crashes) <= self.limit

    @property
    def recent(self) -> int:
        return len(self._crashes)


def describe_exit(returncode: int) -> str:
    """``exit status 2`` or ``killed by signal 9 (SIGKILL)``, as ``subprocess`` reports it."""
    if returncode >= 0:
        return f"exit status {returncode}"
    import signal

    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        return f"killed by signal {-returncode}"
    return f"killed by signal {-returncode} ({name})"

"""One process-wide thread that runs escalation deadlines, even while an event loop is blocked."""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable

import structlog

__all__ = ["schedule"]

log = structlog.get_logger("agent_sdk.watchdog")

_lock = threading.Condition()
_heap: list[tuple[float, int, Callable[[], None]]] = []
_counter = itertools.count()
_thread: threading.Thread | None = None


def _run() -> None:
    while True:
        with _lock:
            while not _heap or _heap[0][0] > time.monotonic():
                _lock.wait(None if not _heap else max(0.0, _heap[0][0] - time.monotonic()))
            _, _, callback = heapq.heappop(_heap)
        try:
            callback()
        except Exception:  # one failing callback must not stop the others
            log.exception("escalation callback failed")


def schedule(delay: float, callback: Callable[[], None]) -> None:
    """Run ``callback`` in the watchdog thread after ``delay`` seconds.

    A thread, not an event-loop timer: escalation must fire when the agent's own code (or an
    AsyncAgent's loop) is stuck in blocking code, which is exactly when it is needed.
    """
    global _thread
    with _lock:
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_run, name="agent-sdk-watchdog", daemon=True)
            _thread.start()
        heapq.heappush(_heap, (time.monotonic() + delay, next(_counter), callback))
        _lock.notify()

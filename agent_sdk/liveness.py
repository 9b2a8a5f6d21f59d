"""One liveness ticker per event loop: proof that the loop runs, and a re-read after a freeze.

After a freeze (SIGSTOP, a paused VM, a loop blocked by user code) a kill may sit unread in the
socket while the agent's own code runs on. Safe points therefore also check how long ago the
loop last proved it runs; past STALL_LIMIT they gate on a fresh read of the kill records. One
ticker serves every agent of a loop, so a process hosting many agents pays for one timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from typing import Protocol

__all__ = ["LIVENESS_TICK", "STALL_LIMIT", "LoopLiveness", "for_loop"]

LIVENESS_TICK = 0.1
STALL_LIMIT = 0.3


class Freezable(Protocol):
    def on_freeze(self) -> None: ...


class LoopLiveness:
    """The stamp that safe points read, refreshed by one task on the loop."""

    def __init__(self) -> None:
        #: monotonic time at which the loop last proved it runs.
        self.stamp = time.monotonic()
        self._members: weakref.WeakSet[Freezable] = weakref.WeakSet()
        self._task: asyncio.Task[None] | None = None

    def stalled(self) -> bool:
        return time.monotonic() - self.stamp > STALL_LIMIT

    def add(self, member: Freezable) -> None:
        self._members.add(member)
        if self._task is None or self._task.done():
            self.stamp = time.monotonic()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="agent-sdk liveness")

    def discard(self, member: Freezable) -> None:
        self._members.discard(member)
        if not self._members and self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                await asyncio.sleep(LIVENESS_TICK)
                if self.stalled():
                    # Gate every agent *before* refreshing the stamp: no thread may pass a safe
                    # point on stale flags while a kill may still wait unread in the socket.
                    for member in list(self._members):
                        member.on_freeze()
                self.stamp = time.monotonic()


_LOOPS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopLiveness] = weakref.WeakKeyDictionary()


def for_loop(loop: asyncio.AbstractEventLoop) -> LoopLiveness:
    """The liveness of ``loop`` (created on first use)."""
    liveness = _LOOPS.get(loop)
    if liveness is None:
        liveness = _LOOPS[loop] = LoopLiveness()
    return liveness

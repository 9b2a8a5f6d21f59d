"""Guarded calls in flight: a kill cancels them at once, and their caller gets AgentKilled instead."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from mesh.errors import AgentKilled

__all__ = ["GuardedCalls"]


class GuardedCalls:
    """The tasks inside a guarded call (with nesting depth), and which of them a kill cancelled.

    Only a cancel of ours becomes AgentKilled: one from elsewhere (the task's own owner, say)
    goes through untouched, and a cancel the call swallowed is taken back when it returns.
    """

    def __init__(self) -> None:
        self._depth: dict[asyncio.Task[Any], int] = {}
        self._cancelled: set[asyncio.Task[Any]] = set()

    def __bool__(self) -> bool:
        return bool(self._depth)

    def cancel_all(self) -> None:
        """A kill: cancel every guarded call in flight (once each)."""
        for task in self._depth:
            if task not in self._cancelled:
                self._cancelled.add(task)
                task.cancel()

    def unwinding(self) -> list[asyncio.Task[Any]]:
        """Cancelled calls still unwinding (other than the current task's)."""
        me = asyncio.current_task()
        return [t for t in self._cancelled if not t.done() and t is not me]

    async def run(
        self,
        fn: Callable[..., Coroutine[Any, Any, Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        killed_error: Callable[[], AgentKilled],
    ) -> Any:
        task = asyncio.current_task()
        assert task is not None
        self._depth[task] = self._depth.get(task, 0) + 1
        try:
            return await fn(*args, **kwargs)
        except asyncio.CancelledError:
            if task in self._cancelled and task.cancelling() == 1:
                self._cancelled.discard(task)
                task.uncancel()
                raise killed_error() from None
            raise
        finally:
            depth = self._depth.pop(task, 1) - 1
            if depth:
                self._depth[task] = depth
            elif task in self._cancelled:  # the call swallowed our cancel: take it back
                self._cancelled.discard(task)
                if task.cancelling():
                    task.uncancel()

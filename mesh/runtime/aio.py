"""Asyncio helpers that keep cancellation intact."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from typing import Any, TypeVar

__all__ = ["cancelling", "raise_if_cancelling", "stop_tasks", "wait_for"]

T = TypeVar("T")


async def wait_for(awaitable: Awaitable[T], timeout: float | None) -> T:
    """``asyncio.wait_for`` without its Python 3.11 flaw.

    On 3.11, a cancel that races ``wait_for``'s own timeout can come out as ``TimeoutError``; a
    loop that treats timeouts as routine then swallows the cancel and never stops (we saw a
    controller hang on shutdown that way). ``asyncio.timeout`` tells its own expiry apart from
    an outside cancel, so the cancel always propagates.
    """
    async with asyncio.timeout(timeout):
        return await awaitable


def cancelling() -> bool:
    """True if the running task has been asked to stop, even if a library swallowed the cancel.

    nats-py turns a cancel into another exception in places (a ``next_msg`` on a closed
    connection raises ``ConnectionClosedError``, a stalled ``publish_async`` raises
    ``TooManyStalledMsgsError``). A retry loop that catches ``Exception`` would then go on
    forever; ``Task.cancelling()`` still counts the request, so the loop can tell.

    On Python 3.11 it can even vanish: a cancel that lands in the loop iteration where a
    ``request()``'s reply arrives makes ``asyncio.wait_for`` (which nats-py uses for every
    request) return the reply instead of raising (fixed in 3.12). The call then looks like a
    success; only ``cancelling()`` shows the task was asked to stop.
    """
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def raise_if_cancelling() -> None:
    """Re-raise a cancel that a library turned into another exception; call it in ``except``."""
    if cancelling():
        raise asyncio.CancelledError


async def stop_tasks(tasks: Iterable[asyncio.Task[Any]], timeout: float) -> set[asyncio.Task[Any]]:
    """Cancel ``tasks`` and wait at most ``timeout`` seconds; the ones still running are returned.

    A task that swallowed its cancel is cancelled again every few hundredths of a second, so a
    single lost cancel never leaves a task running after its owner stopped.
    """
    pending = {t for t in tasks if not t.done()}
    deadline = asyncio.get_running_loop().time() + timeout
    while pending:
        for task in pending:
            task.cancel()
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            break
        _, pending = await asyncio.wait(pending, timeout=min(0.05, left))
    return pending

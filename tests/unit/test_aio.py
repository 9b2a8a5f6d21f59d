"""mesh.runtime.aio.wait_for: timeouts as usual, and an outside cancel that is never lost."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from mesh.runtime.aio import raise_if_cancelling, stop_tasks, wait_for


async def test_returns_the_result_or_times_out() -> None:
    assert await wait_for(asyncio.sleep(0, result=7), 1.0) == 7
    with pytest.raises(TimeoutError):
        await wait_for(asyncio.Event().wait(), 0.01)


async def test_a_cancel_landing_as_the_wait_completes_is_not_lost() -> None:
    """The controller writer's shape: its wake event is set all the time under load. With
    Python 3.11's ``asyncio.wait_for``, a cancel delivered in the same loop iteration as the
    wake returns normally instead, and the loop never stops."""

    async def writer_loop(wake: asyncio.Event) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await wait_for(wake.wait(), 5.0)
            wake.clear()

    for _ in range(20):
        wake = asyncio.Event()
        task = asyncio.create_task(writer_loop(wake))
        await asyncio.sleep(0)  # one turn: the task runs until it parks in wait_for
        wake.set()
        task.cancel()  # in the same iteration as the wake
        done, _ = await asyncio.wait({task}, timeout=2.0)
        assert done, "the cancel was swallowed: the loop kept running"
        assert task.cancelled()


async def _swallowing_retry_loop(turns: list[int], *, guarded: bool, until: int = 10**9) -> None:
    """A retry loop whose awaited call turns a cancel into another error, as nats-py's next_msg does."""
    while len(turns) < until:
        try:
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                raise ConnectionError("closed") from None
        except Exception:
            if guarded:
                raise_if_cancelling()
            turns.append(1)


async def test_raise_if_cancelling_ends_a_loop_whose_cancel_was_turned_into_another_error() -> None:
    turns: list[int] = []
    task = asyncio.create_task(_swallowing_retry_loop(turns, guarded=True))
    await asyncio.sleep(0)  # one turn: the loop starts and parks in its sleep
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert turns == []


async def test_stop_tasks_recancels_until_a_swallowing_task_ends() -> None:
    turns: list[int] = []
    task = asyncio.create_task(_swallowing_retry_loop(turns, guarded=False, until=3))
    await asyncio.sleep(0)  # one turn: the loop starts and parks in its sleep
    # The unguarded loop swallows each cancel; it ends only after its third, so one cancel is not enough.
    assert await stop_tasks([task], timeout=5.0) == set()
    assert len(turns) == 3
    guarded = asyncio.create_task(_swallowing_retry_loop([], guarded=True))
    await asyncio.sleep(0)  # one turn: the loop starts and parks in its sleep
    assert await stop_tasks([guarded], timeout=5.0) == set()
    assert guarded.cancelled()

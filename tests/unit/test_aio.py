"""mesh.aio.wait_for: timeouts as usual, and an outside cancel that is never lost."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from mesh.aio import wait_for


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
        await asyncio.sleep(0.01)  # parked in wait_for
        wake.set()
        task.cancel()  # in the same iteration as the wake
        done, _ = await asyncio.wait({task}, timeout=2.0)
        assert done, "the cancel was swallowed: the loop kept running"
        assert task.cancelled()

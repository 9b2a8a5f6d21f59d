"""A cancel that nats-py swallows on Python 3.11 still stops an agent's loop (issue 13, the policy-test hang).

The reduction: a task cancelled in the loop iteration where its ``request()`` reply arrives gets the
reply back and no ``CancelledError`` (CPython 3.11's ``asyncio.wait_for``, which nats-py uses for
every request). The policy test's agent loop was cancelled while its ``resumed`` event was being
acknowledged; it kept running, and the test waited for it forever.
"""

from __future__ import annotations

import asyncio
import sys

import nats
import pytest

from agent_sdk import AsyncAgent
from mesh.runtime.settings import Settings

HANG_BOUND = 10.0  # only stops a hang


async def _cancel_as_reply_lands(nc: nats.NATS, task: asyncio.Task[None]) -> None:
    """Cancel ``task`` from the reply future's own done callback: the same iteration as the reply."""
    while not nc._resp_map:
        await asyncio.sleep(0)
    future = next(iter(nc._resp_map.values()))
    future.add_done_callback(lambda _f: task.cancel())


async def _responder(nc: nats.NATS) -> None:
    async def reply(msg: nats.aio.msg.Msg) -> None:
        await msg.respond(b"pong")

    await nc.subscribe("svc.ping", cb=reply)


async def test_nats_py_loses_a_cancel_that_lands_with_the_reply(settings: Settings) -> None:
    """The upstream behaviour this project works around; if it ever changes, this says so."""
    nc = await nats.connect(settings.nats_url)
    try:
        await _responder(nc)
        after: list[str] = []

        async def caller() -> None:
            await nc.request("svc.ping", b"", timeout=5)
            after.append("returned")

        task = asyncio.create_task(caller())
        await _cancel_as_reply_lands(nc, task)
        await asyncio.gather(task, return_exceptions=True)
        if sys.version_info >= (3, 12):
            assert task.cancelled()  # 3.12's wait_for delivers the cancel
        else:
            assert after == ["returned"] and not task.cancelled()
            assert task.cancelling() == 1  # the request is still counted: what our safe points read
    finally:
        await nc.close()


@pytest.mark.parametrize("safe_point", ["sleep", "heartbeat", "checkpoint", "guard"])
async def test_an_agent_loop_whose_cancel_was_swallowed_stops_at_its_next_safe_point(
    settings: Settings, safe_point: str
) -> None:
    nc = await nats.connect(settings.nats_url)
    agent = AsyncAgent("agent://acme/prod/looper", instance="l1", settings=settings, hard_kill=False)
    await agent.start()
    try:
        await _responder(nc)
        steps: list[int] = []

        @agent.guard
        async def act(n: int) -> None:
            steps.append(n)

        async def loop() -> None:
            n = 0
            while True:
                await nc.request("svc.ping", b"", timeout=5)  # a tool call that swallows the cancel
                n += 1
                if safe_point == "sleep":
                    await agent.sleep(0.01)
                elif safe_point == "heartbeat":
                    await agent.heartbeat()
                elif safe_point == "checkpoint":
                    await agent.checkpoint({"n": n})
                else:
                    await act(n)
                await asyncio.sleep(0.01)  # sleep-ok: paces the work loop (a plain pause, not a safe point)

        task = asyncio.create_task(loop())
        await _cancel_as_reply_lands(nc, task)
        done, _ = await asyncio.wait({task}, timeout=HANG_BOUND)
        assert task in done, "the loop went on after its cancel"
        assert task.cancelled()
        if safe_point == "guard":
            assert steps == []  # the guarded action never ran after the cancel
    finally:
        await agent.stop()
        await nc.close()

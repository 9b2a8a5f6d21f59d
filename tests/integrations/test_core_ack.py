"""The core change the integrations need: a cancelled guarded call that pauses does not hold the ack back."""

from __future__ import annotations

import asyncio

from agent_sdk import AgentKilled, AsyncAgent
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection
from tests.integration.sdk_helpers import delete_kill, put_kill
from tests.integrations.helpers import wait_ack

URI = "agent://acme/prod/core"


async def test_a_cancelled_call_that_pauses_is_acknowledged_without_waiting_out_the_grace(
    conn: Connection, settings: Settings
) -> None:
    async with AsyncAgent(URI, instance="c1", settings=settings, hard_kill=False, on_kill="pause") as agent:
        entered = asyncio.Event()

        @agent.guard
        async def tool() -> None:
            entered.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                await asyncio.sleep(0.01)  # sleep-ok: unwinding takes a moment (closing a connection, say)
                raise

        async def worker() -> str:
            try:
                await tool()
            except AgentKilled:
                await agent.heartbeat()  # what an integration does: pause here, re-run after resume
            return "resumed"

        task = asyncio.create_task(worker())
        await asyncio.wait_for(entered.wait(), 30)
        # The ack must come once the call has left its guard, long before this grace runs out
        # (wait_ack gives up after 30 s): before the change, it came only when the grace ended.
        key, _, record = await put_kill(conn, URI, grace=600.0)
        ack = await wait_ack(conn, record.command_id)
        assert ack.data["status"] == "paused" and not task.done()
        await delete_kill(conn, key)
        assert await asyncio.wait_for(task, 30) == "resumed"

"""A shared connection that comes back: every agent on it honours a kill written while it was away."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import pytest

from agent_sdk import AgentKilled, AsyncAgent
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection
from mesh.transport.provision import provision
from mesh.transport.server import EmbeddedServer
from tests.integration.sdk_helpers import audit_events, await_until, put_kill
from tests.tcpproxy import TcpProxy
from tests.waiting import await_until as await_async_until

pytestmark = pytest.mark.chaos

URI = "agent://acme/prod/fleet"


async def _equal(got: Awaitable[set[str]], want: set[str]) -> bool:
    return await got == want


async def test_no_agent_of_a_shared_connection_acts_between_reconnect_and_the_batched_reread(
    own_server: EmbeddedServer, prefix: str
) -> None:
    direct = Settings(nats_url=own_server.url, prefix=prefix, actor="tester", connect_timeout=3.0)
    proxy = TcpProxy(own_server.port)
    via = direct.model_copy(update={"nats_url": proxy.url})
    op = await Connection.open(direct, name="operator")
    await provision(op.js, op.ns)
    shared = await Connection.open(via, name="fleet")
    agents = [
        AsyncAgent(URI, instance=f"r{i}", connection=shared, hard_kill=False, on_kill="raise")
        for i in range(6)
    ]
    phase = ["before"]
    actions: dict[str, list[str]] = {}
    tasks: list[asyncio.Task[None]] = []
    try:
        await asyncio.gather(*(a.start() for a in agents))

        async def work(agent: AsyncAgent) -> None:
            seen = actions.setdefault(agent.instance, [])

            @agent.guard
            async def act() -> None:
                seen.append(phase[0] if shared.is_connected else "away")

            try:
                while True:
                    await act()
                    await agent.sleep(0.005)
            except AgentKilled:
                pass

        tasks = [asyncio.create_task(work(a)) for a in agents]
        await await_until(lambda: all(len(v) > 3 for v in actions.values()) and len(actions) == 6)
        proxy.cut()
        await await_until(lambda: not shared.is_connected, what="the fleet sees the outage")
        _, _, record = await put_kill(op, URI, reason="written during outage")
        phase[0] = "after the kill"
        proxy.restore(hold=2.0)
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
        assert all(a.killed for a in agents)
        for name, seen in actions.items():
            assert "after the kill" not in seen, (name, seen[-5:])

        async def acked() -> set[str]:
            halted = await audit_events(op, "halted")
            return {e.instance or "" for e in halted if e.command_id == record.command_id}

        want = {a.instance for a in agents}
        await await_async_until(lambda: _equal(acked(), want), what="every agent's ack of the kill")
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(a.stop() for a in agents), return_exceptions=True)
        await shared.close()
        await op.close()
        proxy.close()

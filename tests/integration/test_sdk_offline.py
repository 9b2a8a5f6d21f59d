"""The SDK without NATS: safe points never wait on the network, ``fail_closed_after=S`` halts only
after S seconds without contact, and the periodic re-read catches a kill whose push was missed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from agent_sdk import AgentKilled, AsyncAgent
from mesh.client.operator import AsyncMesh
from mesh.runtime.settings import Settings
from mesh.transport.server import EmbeddedServer
from tests.heartbeats import watching
from tests.integration.sdk_helpers import AgentPool
from tests.tcpproxy import TcpProxy
from tests.waiting import await_until, wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(90)]

URI = "agent://acme/prod/mailer"


@pytest.fixture
def proxy(nats_server: EmbeddedServer) -> Iterator[TcpProxy]:
    p = TcpProxy(nats_server.port)
    yield p
    p.close()


@pytest.fixture
def via_proxy(proxy: TcpProxy, settings: Settings) -> Settings:
    """The test's namespace, reached through a proxy the test can cut."""
    return settings.model_copy(update={"nats_url": proxy.url})


def _offline(agent: Any) -> bool:
    conn = agent._core.conn
    return conn is None or not conn.is_connected


def test_safe_points_make_progress_while_nats_is_unreachable(
    conn: Any, via_proxy: Settings, proxy: TcpProxy
) -> None:
    """A non-fail-closed agent keeps working through an outage: heartbeat, checkpoint, a guarded
    call and sleep each return at once (a wait on the network would hang this test)."""
    pool = AgentPool(via_proxy)
    try:
        agent = pool.start(URI, instance="n1")
        done: list[int] = []

        @agent.guard
        def act(n: int) -> None:
            done.append(n)

        act(0)
        proxy.cut()
        wait_until(lambda: _offline(agent), what="the agent to see the outage")
        for n in range(1, 101):
            agent.heartbeat(metadata={"n": n})
            agent.checkpoint({"n": n})
            act(n)
            agent.sleep(0)
        assert done == list(range(101)) and _offline(agent)  # all of it while away
        assert not agent.killed
        proxy.restore()
        wait_until(lambda: not _offline(agent), what="the reconnect")
        agent.heartbeat()
    finally:
        pool.close()


def test_fail_closed_does_not_halt_for_an_outage_shorter_than_its_limit(
    conn: Any, via_proxy: Settings, proxy: TcpProxy
) -> None:
    pool = AgentPool(via_proxy)
    try:
        agent = pool.start(URI, instance="f-short", fail_closed_after=20.0)
        agent.heartbeat()
        proxy.cut()
        wait_until(lambda: _offline(agent), what="the agent to see the outage")
        # Away for at least three turns of its fail-closed check (every 0.5 s), far below 20 s;
        # the agent's own safe-point sleep measures it, and must not halt it either.
        agent.sleep(1.5)
        assert _offline(agent) and not agent.killed
        proxy.restore()
        wait_until(lambda: not _offline(agent), what="the reconnect")
        assert not agent.killed
        agent.heartbeat()
    finally:
        pool.close()


async def test_fail_closed_async_agent_halts_without_contact_and_clears_on_reconnect(
    conn: Any, via_proxy: Settings, proxy: TcpProxy
) -> None:
    agent = AsyncAgent(URI, instance="f-async", settings=via_proxy, hard_kill=False, fail_closed_after=0.5)
    await agent.start()
    try:
        await agent.heartbeat()
        proxy.cut()
        await await_until(lambda: agent.killed, what="the fail-closed halt")
        with pytest.raises(AgentKilled) as info:
            await agent.heartbeat()
        assert info.value.record is None and "fail_closed_after" in str(info.value)
        assert agent.kill_record is None  # no operator kill: the agent halted itself
        proxy.restore()
        assert await agent.wait_resumed(timeout=30)
        await agent.heartbeat()
    finally:
        await agent.stop()


async def test_the_periodic_reread_catches_a_kill_whose_push_was_missed(
    conn: Any, settings: Settings
) -> None:
    agent = AsyncAgent(URI, instance="r1", settings=settings, hard_kill=False, resync_interval=0.5)
    await agent.start()
    try:
        # A dead push path: the agent's control subscriptions are gone, so only its own
        # periodic re-read of the kill records can bring the kill.
        for sub in agent._core.feed.subs:
            await sub.unsubscribe()
        async with watching(conn.nc, conn.ns) as hbs:
            await hbs.more(["r1"])  # the agent is alive and connected
        async with AsyncMesh(settings) as op:
            await op.kill(URI, reason="push missed", wait=0)
        await await_until(lambda: agent.killed, what="the periodic re-read to see the kill")
        with pytest.raises(AgentKilled):
            await agent.heartbeat()
    finally:
        await agent.stop()

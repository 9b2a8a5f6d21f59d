"""Many agents on one shared connection: one subscription per control subject, batched re-reads."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from nats.aio.msg import Msg

from agent_sdk import AgentKilled, AsyncAgent
from agent_sdk.router import ControlRouter, router_for
from mesh.protocol.codec import decode
from mesh.protocol.models import Heartbeat
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection
from tests.integration.sdk_helpers import audit_events, await_until, delete_kill, put_kill

URI = "agent://acme/prod/fleet"
OTHER = "agent://acme/prod/other"
AGENTS = 12


@pytest.fixture
async def shared(conn: Connection, settings: Settings) -> AsyncIterator[Connection]:
    """The connection the fleet shares (opened once ``conn`` has provisioned the namespace)."""
    c = await Connection.open(settings, name="fleet")
    yield c
    await c.close()


async def _fleet(
    shared: Connection, count: int = AGENTS, on_kill: str = "pause", resync_interval: float | None = None
) -> list[AsyncAgent]:
    agents = [
        AsyncAgent(
            URI,
            instance=f"f{i:02d}",
            connection=shared,
            hard_kill=False,
            on_kill=on_kill,
            resync_interval=resync_interval,
        )
        for i in range(count)
    ]
    await asyncio.gather(*(a.start() for a in agents))
    return agents


async def _cut_pushes(router: ControlRouter) -> None:
    """A dead push path: every control subscription of the router's connection unsubscribed."""
    for sub in list(router._subs.values()):
        await sub.unsubscribe()


async def test_the_agents_of_a_connection_share_one_subscription_per_control_subject(
    conn: Connection, shared: Connection
) -> None:
    agents = await _fleet(shared)
    other = await AsyncAgent(OTHER, instance="o1", connection=shared, hard_kill=False).start()
    router = router_for(shared)
    # 8 pattern subjects shared by the fleet, its 12 own ones; the other agent shares the
    # org/env/everything patterns (4) and brings 4 of its own plus its instance subject.
    assert router.subscriptions == 8 + AGENTS + 5
    assert len(shared.nc._subs) >= router.subscriptions
    assert len(shared.nc._subs) < 9 * (AGENTS + 1)

    parked = [asyncio.create_task(a.sleep(60)) for a in agents]  # each at a safe point
    key, _, record = await put_kill(conn, URI)
    await await_until(lambda: all(a.status.value == "paused" for a in agents), what="the fleet halted")
    assert not other.killed
    acks = [e for e in await audit_events(conn, "halted") if e.command_id == record.command_id]
    assert sorted(e.instance or "" for e in acks) == [f"f{i:02d}" for i in range(AGENTS)]

    await delete_kill(conn, key)
    await asyncio.wait_for(asyncio.gather(*parked), 30)  # pause mode: the sleeps return on resume
    assert not any(a.killed for a in agents)
    assert len([e for e in await audit_events(conn, "resumed")]) == AGENTS
    # A kill of one instance reaches only that instance, through the shared subscriptions.
    await put_kill(conn, URI, "f03")
    await await_until(lambda: agents[3].killed, what="f03 killed")
    assert [a.killed for a in agents].count(True) == 1
    await asyncio.gather(*(a.stop() for a in agents))
    assert router.subscriptions == 9  # only the other agent's nine are left
    await other.stop()
    assert router.subscriptions == 0
    assert shared.is_connected


async def test_one_periodic_reread_per_connection_catches_a_kill_whose_push_was_missed(
    conn: Connection, shared: Connection
) -> None:
    agents = await _fleet(shared, on_kill="raise", resync_interval=0.5)
    router = router_for(shared)
    await _cut_pushes(router)  # so only the router's re-read of the kill records can bring the kill
    await put_kill(conn, URI)
    await await_until(lambda: all(a.killed for a in agents), what="the re-read to see the kill")
    for agent in agents:
        with pytest.raises(AgentKilled):
            await agent.heartbeat()
    await asyncio.gather(*(a.stop() for a in agents))


async def test_a_malformed_push_on_a_shared_subject_is_counted_and_the_fleet_stays_killable(
    conn: Connection, shared: Connection
) -> None:
    agents = await _fleet(shared, count=4)
    router = router_for(shared)
    await conn.nc.publish(conn.ns.control_subject("acme.prod.fleet"), b"not a kill record")
    await conn.nc.flush()
    await await_until(lambda: router.malformed >= 1, what="the malformed push counted")
    assert all(a._core.malformed == 1 for a in agents)
    assert not any(a.killed for a in agents)
    await put_kill(conn, URI)
    await await_until(lambda: all(a.killed for a in agents), what="the real kill")
    await asyncio.gather(*(a.stop() for a in agents))


async def test_the_agents_that_re_read_together_share_one_direct_multi_get(
    conn: Connection, shared: Connection
) -> None:
    agents = await _fleet(shared, on_kill="raise")
    router = router_for(shared)
    await _cut_pushes(router)  # only the reads can bring the kill now
    key, _, _ = await put_kill(conn, URI, "f05")
    requests: list[str] = []

    async def seen(msg: Msg) -> None:
        requests.append(msg.subject)

    watch = await conn.nc.subscribe(f"$JS.API.DIRECT.GET.KV_{conn.ns.control_bucket}", cb=seen)
    await conn.nc.flush()
    assert all(await asyncio.gather(*(a._core.resync() for a in agents)))
    await conn.nc.flush()
    assert len(requests) == 1  # twelve agents, nine keys each: one request
    assert [a.instance for a in agents if a.killed] == ["f05"]
    assert agents[5].kill_record is not None and agents[5].kill_record.target
    await router.resync_all()  # the periodic re-read: one request for the whole connection
    await conn.nc.flush()
    assert len(requests) == 2
    await watch.unsubscribe()
    await delete_kill(conn, key)
    await router.resync_all()  # a clear read from the KV lifts the kill
    await await_until(lambda: not agents[5].killed, what="the clear applied")
    await asyncio.gather(*(a.stop() for a in agents))


async def test_one_timer_per_interval_drives_every_agents_own_heartbeats(
    conn: Connection, shared: Connection
) -> None:
    beats: dict[str, list[int]] = {}
    subjects: set[tuple[str, str]] = set()

    async def on_hb(msg: Msg) -> None:
        hb = decode(Heartbeat, msg.data)
        subjects.add((msg.subject.rsplit(".", 1)[-1], hb.instance))
        beats.setdefault(hb.instance, []).append(hb.seq)

    watch = await conn.nc.subscribe(f"{conn.ns.prefix}.hb.>", cb=on_hb)
    try:
        agents = [
            AsyncAgent(URI, instance=f"h{i}", connection=shared, heartbeat_interval=0.2) for i in range(5)
        ]
        slow = AsyncAgent(URI, instance="slow", connection=shared, heartbeat_interval=0.3)
        await asyncio.gather(*(a.start() for a in [*agents, slow]))
        router = router_for(shared)
        assert router.heartbeat_timers == 2  # one per interval, not one per agent
        names = [a.instance for a in [*agents, slow]]
        await await_until(lambda: all(len(beats.get(n, [])) >= 4 for n in names), what="heartbeats")
        for n in names:
            assert beats[n] == sorted(set(beats[n]))  # each instance's own sequence, in order
        assert all(tail == name for tail, name in subjects)  # one message per instance, on its subject
        await agents[0].stop()
        stopped = len(beats["h0"])
        marks = {n: len(beats[n]) for n in names[1:]}
        await await_until(lambda: all(len(beats[n]) >= marks[n] + 3 for n in names[1:]), what="more beats")
        assert len(beats["h0"]) == stopped  # a stopped agent's heartbeats end with it
        await slow.stop()
        assert router.heartbeat_timers == 1
        await asyncio.gather(*(a.stop() for a in agents[1:]))
        assert router.heartbeat_timers == 0
    finally:
        await watch.unsubscribe()

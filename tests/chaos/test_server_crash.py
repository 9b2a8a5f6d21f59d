"""nats-server ``kill -9`` and restart on the same store, while a fleet runs and a kill is issued."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from mesh.client.operator import AsyncMesh
from mesh.protocol.models import EventType, Status
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection
from mesh.transport.provision import ProvisionOptions, provision
from mesh.transport.server import EmbeddedServer
from tests.heartbeats import watching

from .helpers import (
    all_events,
    count,
    eventually,
    offline,
    stalled,
    start_fleet,
    stop_fleet,
    stored_checkpoint,
)

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(180)]

TARGET = "agent://acme/prod/mailer"


async def test_server_kill9_right_after_a_kill(own_server: EmbeddedServer) -> None:
    settings = Settings(nats_url=own_server.url, prefix="c" + uuid.uuid4().hex[:8], actor="chaos")
    async with Connection(settings) as conn:
        await provision(conn.js, conn.ns, ProvisionOptions())
    members = [(TARGET, f"i{k}") for k in range(4)]
    bystander = [("agent://acme/prod/other", "o1")]
    workers = await start_fleet(settings, members + bystander)
    targeted, other = workers[:4], workers[4]
    try:
        async with AsyncMesh(settings) as op:
            report = await op.kill(TARGET, reason="chaos: server crash", wait=0.0)
        # The record is acked; crash the server before (most) acknowledgements can be written.
        own_server.kill()
        # Restart only once every agent has seen the outage, so each one reconnects and re-reads.
        await eventually(lambda: offline(workers), what="agents to see the crash")
        await asyncio.to_thread(own_server.start)

        await eventually(lambda: stalled(targeted, witness=other), what="every targeted instance to halt")
        assert not other.agent.killed
        done = other.done
        await eventually(lambda: other.done > done, what="the bystander to keep working")

        async def acks_complete() -> bool:
            events = await all_events(settings)
            halted = count(events, EventType.HALTED, revision=report.revision)
            return all(halted[(w.uri, w.instance)] >= 1 for w in targeted)

        await eventually(acks_complete, what="every halted acknowledgement in the audit stream")
        events = await all_events(settings)
        # no event lost, none doubled
        assert len({e.id for e in events}) == len(events)
        assert [e.command_id for e in events if e.type is EventType.KILL] == [report.command_id]
        halted = count(events, EventType.HALTED, revision=report.revision)
        assert halted == {(w.uri, w.instance): 1 for w in targeted}
        started = count(events, EventType.STARTED)
        assert started == {(w.uri, w.instance): 1 for w in workers}
        # checkpoints intact: what each instance last checkpointed is what the store holds
        for w in targeted:
            cp = await stored_checkpoint(settings, w.uri, w.instance)
            assert cp is not None and cp.state == {"done": w.checkpointed}, (w.instance, cp, w.checkpointed)

        # and the kill survives a second crash: resume must not be needed twice, nothing un-kills
        own_server.kill()
        await eventually(lambda: offline(workers), what="agents to see the crash")
        await asyncio.to_thread(own_server.start)
        # Evidence that each agent is back and had the chance to un-kill itself: a heartbeat of
        # its own on the restarted server, still reporting the record it is under.
        async with Connection(settings, name="chaos-hb") as conn, watching(conn.nc, conn.ns) as hbs:
            await hbs.more([w.instance for w in workers], n=2)
            for w in targeted:
                last = hbs.last(w.instance)
                assert last is not None and last.status is Status.PAUSED and last.kill_keys, last
        assert await stalled(targeted, witness=other)
        async with AsyncMesh(settings) as op:
            await op.resume(TARGET, reason="chaos over", wait=5.0)
        await eventually(lambda: all(not w.agent.killed for w in targeted), what="resume after the crashes")
        marks = [w.done for w in targeted]
        await eventually(
            lambda: all(w.done > m for w, m in zip(targeted, marks, strict=True)), what="work to continue"
        )
    finally:
        await stop_fleet(workers)

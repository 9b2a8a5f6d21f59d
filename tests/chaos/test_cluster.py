"""A 3-node cluster on loopback, with compose.yaml's flags and nats.conf's roles, R3 buckets and stream:
one node is killed (``kill -9``) and then a kill is issued: every instance ends halted, including those
that were connected to the dead node (they fail over to a surviving node and re-read there)."""

from __future__ import annotations

import asyncio

import pytest

from mesh.client.operator import AsyncMesh
from mesh.protocol.models import EventType
from mesh.protocol.reports import KillReport
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection
from mesh.transport.provision import ProvisionOptions, provision

from .cluster import ClusterNode
from .helpers import all_events, count, eventually, left, stalled, start_fleet, stop_fleet

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(240)]

TARGET = "agent://acme/prod/mailer"


def role(url: str, env: dict[str, str], user: str) -> Settings:
    return Settings(
        nats_url=url,
        user=user,
        password=env[f"MESH_{user.upper()}_PASSWORD"],
        prefix="mesh",
        connect_timeout=5.0,
    )


async def test_kill_after_a_node_died_reaches_its_agents_through_the_others(
    cluster: tuple[list[ClusterNode], dict[str, str]],
) -> None:
    nodes, env = cluster
    urls = [n.server.url for n in nodes]
    all_urls = ",".join(urls)

    async def provisioned() -> bool:
        async with Connection(role(all_urls, env, "admin")) as conn:
            await provision(conn.js, conn.ns, ProvisionOptions(replicas=3))
        return True

    await eventually(provisioned, timeout=90, what="R3 provisioning (JetStream meta leader elected)")
    async with Connection(role(all_urls, env, "operator")) as conn:
        info = await conn.js.stream_info(conn.ns.audit_stream)
        assert info.config.num_replicas == 3 and info.config.deny_delete and info.config.deny_purge

    # 6 instances, two on each node (each agent is given one node; it learns the others from it)
    workers = []
    for k in range(6):
        workers += await start_fleet(role(urls[k % 3], env, "agent"), [(TARGET, f"n{k % 3}-i{k}")])
    doomed = [w for w in workers if w.instance.startswith("n0-")]
    operator = role(urls[1], env, "operator")
    try:
        # Node 0 dies first, and its agents notice: the kill can then reach them only through
        # another node (pushed there, or re-read there after failing over).
        nodes[0].server.kill()
        await eventually(lambda: left(doomed, urls[0]), timeout=90, what="node 0's agents to see it die")
        assert not any(w.agent.killed for w in workers)

        async def issued() -> KillReport:
            # while the cluster re-elects leaders a write can time out; the put is idempotent per key
            async with AsyncMesh(operator) as op:
                return await op.kill(TARGET, reason="chaos: node lost", wait=0.0)

        report = await eventually(issued, timeout=90, what="the kill accepted by the surviving nodes")

        await eventually(lambda: stalled(workers), timeout=90, what="every instance to halt")

        async def acked() -> bool:
            halted = count(await all_events(operator), EventType.HALTED, revision=report.revision)
            return all(halted[(w.uri, w.instance)] >= 1 for w in workers)

        await eventually(acked, timeout=90, what="every acknowledgement on the surviving nodes")
        events = await all_events(operator)
        assert len({e.id for e in events}) == len(events)
        assert count(events, EventType.HALTED, revision=report.revision) == {
            (w.uri, w.instance): 1 for w in workers
        }

        # the dead node comes back on its store and catches up; resume reaches everyone
        await asyncio.to_thread(nodes[0].server.start)

        async def resumed() -> bool:
            # while the node rejoins, streams may re-elect leaders: an operator retries (see report)
            async with AsyncMesh(role(urls[2], env, "operator")) as op:
                await op.resume(TARGET, reason="chaos over", wait=5.0)
            return True

        await eventually(resumed, timeout=90, what="resume accepted by the healed cluster")
        await eventually(
            lambda: not any(w.agent.killed for w in workers), timeout=90, what="resume everywhere"
        )
    finally:
        await stop_fleet(workers)

"""A client behind a half-open link (its peer gone, no FIN or RST ever arrives) notices by itself,
reconnects, and so honours a kill made meanwhile. With nats-py's default pings (every 120 s, 2
outstanding) it stayed deaf for minutes; found by the campaign's ``proxy_blackhole`` fault."""

from __future__ import annotations

import uuid

from mesh.client.operator import AsyncMesh
from mesh.protocol.models import EventType
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection
from mesh.transport.provision import ProvisionOptions, provision
from mesh.transport.server import EmbeddedServer
from tests.chaos.helpers import all_events, count, eventually, start_fleet, stop_fleet
from tests.tcpproxy import TcpProxy

TARGET = "agent://acme/prod/mailer"


async def test_a_kill_reaches_an_agent_whose_link_went_half_open(own_server: EmbeddedServer) -> None:
    prefix = "h" + uuid.uuid4().hex[:8]
    direct = Settings(nats_url=own_server.url, prefix=prefix, actor="op")
    async with Connection(direct) as conn:
        await provision(conn.js, conn.ns, ProvisionOptions())
    proxy = TcpProxy(own_server.port)
    workers = await start_fleet(direct.model_copy(update={"nats_url": proxy.url}), [(TARGET, "i1")])
    try:
        assert proxy.blackhole() >= 1  # the agent's link now swallows everything, and stays open
        async with AsyncMesh(direct) as op:
            report = await op.kill(TARGET, reason="while half-open", wait=0.0)
        # 30 s is five times what the pings need; with the default pings it took minutes.
        await eventually(lambda: workers[0].agent.killed, timeout=30, what="the agent to see the kill")

        async def acked() -> bool:
            return (
                count(await all_events(direct), EventType.HALTED, revision=report.revision)[(TARGET, "i1")]
                == 1
            )

        await eventually(acked, timeout=30, what="the halt acknowledgement")
    finally:
        await stop_fleet(workers)
        proxy.close()

"""With NATS gone past fail_closed_after, an HTTP agent is told to stop (it cannot be told it may
act), a long-poll in progress returns at once, and both recover when NATS is back."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.config import GatewayConfig
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection
from mesh.transport.provision import provision
from mesh.transport.server import EmbeddedServer
from tests.gateway.conftest import eventually
from tests.gateway.http_api_support import api_gateway

pytestmark = pytest.mark.timeout(90)


async def test_http_agent_is_stopped_while_the_gateway_fails_closed(
    own_server: EmbeddedServer, prefix: str
) -> None:
    settings = Settings(nats_url=own_server.url, prefix=prefix, actor="tester", connect_timeout=3.0)
    async with Connection(settings, name="setup") as conn:
        await provision(conn.js, conn.ns)
        async with api_gateway(settings, conn, GatewayConfig(port=0, fail_closed_after=0.5)) as api:
            key = await api.agent_key(instance="w1")
            assert (await api.post("/api/v1/heartbeat", key)).json()["killed"] is False
            poll = asyncio.create_task(api.get("/api/v1/control?killed=false&wait=60", key))
            await asyncio.to_thread(own_server.kill)
            answer = (await asyncio.wait_for(poll, 30)).json()
            assert answer["killed"] is True and answer["fail_closed"] is True and answer["record"] is None
            beat = (await api.post("/api/v1/heartbeat", key)).json()
            assert beat["killed"] is True and beat["fail_closed"] is True and beat["action"] == "pause"
            await asyncio.to_thread(own_server.restart_after_exit)

            async def serving() -> Any:
                r = await api.post("/api/v1/heartbeat", key)
                return r.status_code == 200 and r.json()["killed"] is False

            await eventually(serving, timeout=30)

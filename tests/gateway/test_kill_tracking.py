"""The gateway follows kill records like an agent: read on start, pushes, resume, fail-closed, audit."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import openai
import pytest

from mesh.client.operator import AsyncMesh
from mesh.protocol.models import AuditEvent, EventType
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection
from mesh.transport.kvscan import put_key
from mesh.transport.provision import provision
from mesh.transport.server import EmbeddedServer
from tests.gateway.conftest import AGENT, Running, eventually, gateway_config, start_gateway
from tests.gateway.upstream import FakeUpstream

pytestmark = pytest.mark.timeout(90)

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


async def call(gateway: Running, key: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as c:
        h = {"authorization": f"Bearer {key}"}
        return await c.post(gateway.url + "/v1/chat/completions", json=CHAT, headers=h)


async def test_kill_written_before_the_gateway_started_is_honoured_first(
    settings: Settings, conn: Connection, upstream: FakeUpstream, mesh: AsyncMesh
) -> None:
    await mesh.kill("agent://acme/*/*", reason="org frozen", wait=0)
    async with start_gateway(settings, conn, gateway_config(upstream)) as gw:
        key = await gw.key()
        resp = await call(gw, key)
        assert resp.status_code == 403 and "org frozen" in resp.json()["error"]["message"]
        assert resp.json()["error"]["mesh"]["key"] == "acme._._"
        other = await gw.key("agent://beta/prod/mailer")
        assert (await call(gw, other)).status_code == 200
        await mesh.resume("agent://acme/*/*", reason="thawed")
        await eventually(lambda: _status(gw, key, 200))
        assert len(upstream.seen) == 2


async def _status(gw: Running, key: str, want: int) -> bool:
    return (await call(gw, key)).status_code == want


async def test_refusals_are_audited_in_aggregate(
    gateway: Running, upstream: FakeUpstream, mesh: AsyncMesh, conn: Connection
) -> None:
    events: list[AuditEvent] = []

    async def on_event(msg: Any) -> None:
        events.append(AuditEvent.model_validate_json(msg.data))

    sub = await conn.nc.subscribe(conn.ns.audit_filter(EventType.GATEWAY_REFUSED.value), cb=on_event)
    key = await gateway.key()
    await mesh.kill(AGENT, reason="stop it", wait=0)
    await eventually(lambda: _status(gateway, key, 403))
    for _ in range(30):  # a tight retry loop
        assert (await call(gateway, key)).status_code == 403
    refused = gateway.gw.counters.refused
    await gateway.gw.meter.flush_refusals()
    await eventually(lambda: sum(e.data["count"] for e in events) == refused)
    await sub.unsubscribe()
    assert len(events) < 5, "a retry loop must not flood the audit stream"
    e = events[0]
    assert e.agent_uri == AGENT and e.instance == "gateway" and "stop it" in (e.reason or "")
    assert e.data["routes"] == {"/v1/chat/completions": e.data["count"]}
    assert upstream.seen == []


@pytest.mark.chaos
async def test_fail_closed_when_nats_is_gone_and_back(
    own_server: EmbeddedServer, upstream: FakeUpstream, prefix: str
) -> None:
    settings = Settings(nats_url=own_server.url, prefix=prefix, actor="tester", connect_timeout=3.0)
    async with Connection(settings, name="setup") as conn:
        await provision(conn.js, conn.ns)
        config = gateway_config(upstream, fail_closed_after=0.5)
        async with start_gateway(settings, conn, config) as gw:
            key = await gw.key()
            assert (await call(gw, key)).status_code == 200
            # A stream in flight when the gateway starts failing closed is cut too.
            ai = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0)
            stream = await ai.chat.completions.create(
                model="paced", messages=[{"role": "user", "content": "x"}], stream=True
            )
            chunks = stream.__aiter__()
            await chunks.__anext__()
            # The key is cached now; the kill state goes stale when NATS goes away.
            await asyncio.to_thread(own_server.kill)

            async def failing_closed() -> bool:
                h = await gw.health()
                return h.status_code == 503 and h.json()["state"] == "fail_closed"

            await eventually(failing_closed, timeout=20)

            async def drain() -> None:
                async for _ in chunks:
                    pass

            with pytest.raises(openai.APIError, match="fail closed"):
                await drain()
            seen = len(upstream.seen)
            resp = await call(gw, key)
            assert resp.status_code == 403 and "fail closed" in resp.json()["error"]["message"]
            assert resp.json()["error"]["mesh"]["fail_closed"] is True
            assert len(upstream.seen) == seen
            await asyncio.to_thread(own_server.restart_after_exit)
            await eventually(lambda: _status(gw, key, 200), timeout=30)
            assert (await gw.health()).json()["ok"] is True


async def test_an_unreadable_kill_record_counts_as_in_force(
    gateway: Running, upstream: FakeUpstream, conn: Connection
) -> None:
    key = await gateway.key()
    assert (await call(gateway, key)).status_code == 200
    await put_key(conn, conn.ns.control_bucket, "acme.prod.mailer", b"{corrupt")
    await eventually(lambda: _status(gateway, key, 403))
    resp = await call(gateway, key)
    assert "unreadable kill record" in resp.json()["error"]["message"]
    other = await gateway.key("agent://acme/prod/other")
    assert (await call(gateway, other)).status_code == 200


async def test_forged_clears_and_garbage_pushes_never_lift_a_kill(
    gateway: Running, upstream: FakeUpstream, mesh: AsyncMesh, conn: Connection
) -> None:
    key = await gateway.key()
    await mesh.kill(AGENT, reason="really stop", wait=0)
    await eventually(lambda: _status(gateway, key, 403))
    subject = conn.ns.control_subject("acme.prod.mailer")
    await conn.nc.publish(subject, b"", headers={"KV-Operation": "DEL", "Nats-Sequence": "999999"})
    await conn.nc.publish(subject, b"{garbage", headers={"Nats-Sequence": "1000000"})
    await conn.nc.publish(subject, b"no headers at all")
    await conn.nc.flush()
    await eventually(lambda: gateway.gw.tracker.malformed >= 1)
    for _ in range(5):
        resp = await call(gateway, key)
        assert resp.status_code == 403 and "really stop" in resp.json()["error"]["message"]
    assert upstream.seen == []

"""The ``gateway`` role of nats.conf: the gateway runs as it end to end, and it can do nothing else."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from gateway.keystore import create_key
from gateway.service import bound_port, running_gateway
from mesh.client.operator import AsyncMesh
from mesh.protocol.models import AuditEvent, EventType, Heartbeat
from mesh.transport.audit import publish_event
from mesh.transport.kvscan import put_key
from tests.gateway.conftest import AGENT, eventually, gateway_config
from tests.gateway.upstream import FakeUpstream
from tests.security.conftest import SecureServer, secure_server  # noqa: F401 - the fixture
from tests.security.permissions_helpers import assert_denied, assert_subscribe_denied, kill_record

pytestmark = pytest.mark.timeout(90)

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


async def test_gateway_runs_as_its_role(secure_server: SecureServer, upstream: FakeUpstream) -> None:  # noqa: F811
    operator = await secure_server.connect("operator")
    controller = await secure_server.connect("controller")
    beats: list[Heartbeat] = []

    async def on_beat(msg: Any) -> None:
        beats.append(Heartbeat.model_validate_json(msg.data))

    await controller.nc.subscribe("mesh.hb.acme.prod.mailer.*", cb=on_beat)
    try:
        key, _ = await create_key(operator, AGENT, instance=None, upstream=None, actor="operator")
        settings = secure_server.settings("gateway")
        async with running_gateway(settings, gateway_config(upstream), meter_interval=0.3) as (_gw, server):
            url = f"http://127.0.0.1:{bound_port(server)}/v1/chat/completions"
            async with httpx.AsyncClient(timeout=30) as c:
                h = {"authorization": f"Bearer {key}"}
                assert (await c.post(url, json=CHAT, headers=h)).status_code == 200
                await eventually(lambda: any(b.usage.get("llm_requests") == 1 for b in beats))
                async with AsyncMesh(connection=operator) as m:
                    report = await m.kill(AGENT, reason="role test", wait=3)
                # The role lets it acknowledge for the instance it serves.
                assert [(r.instance, r.status) for r in report.instances] == [("gateway", "paused")]

                async def refused() -> bool:
                    return (await c.post(url, json=CHAT, headers=h)).status_code == 403

                await eventually(refused)
                health = (await c.get(url.replace("/v1/chat/completions", "/healthz"))).json()
                assert health["ok"] is True
    finally:
        await operator.close()
        await controller.close()


async def test_gateway_role_cannot_kill_resume_mint_keys_or_forge_events(
    secure_server: SecureServer,  # noqa: F811
) -> None:
    gw = await secure_server.connect("gateway")
    try:
        await assert_denied(
            put_key(gw, "mesh_control", "acme.prod.x", kill_record("agent://acme/prod/x", "gw"), timeout=1.0),
            "write to mesh_control",
            "$KV.mesh_control.acme.prod.x",
        )
        await assert_denied(
            put_key(gw, "mesh_gateway_keys", "ab" * 32, b"{}", timeout=1.0),
            "write to mesh_gateway_keys",
            "$KV.mesh_gateway_keys." + "ab" * 32,
        )
        await assert_denied(
            publish_event(
                gw.js, gw.ns, AuditEvent(type=EventType.KILL, target=AGENT), timeout=1.0, attempts=1
            ),
            "write audit events",
            "mesh.audit.acme.prod.mailer._.kill",
        )
        # Its own event type goes through.
        ack = await publish_event(
            gw.js, gw.ns, AuditEvent(type=EventType.GATEWAY_REFUSED, agent_uri=AGENT, instance="i1")
        )
        assert ack.stream == gw.ns.audit_stream
        await assert_subscribe_denied(gw, "mesh.audit.>")
    finally:
        await gw.close()

"""The HTTP API under nats.conf: the gateway runs as its `gateway` user, each API role acts over a
NATS login of its own (so nats-server enforces it), and without those logins it says what to set."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from gateway.api.apikeys import create_api_key
from gateway.api.config import ApiConfig, NatsLogin
from gateway.config import GatewayConfig
from gateway.keystore import create_key
from gateway.service import bound_port, running_gateway
from mesh.client.operator import AsyncMesh
from mesh.transport.connection import Connection
from tests.gateway.http_api_support import validating_client
from tests.security.conftest import SecureServer, secure_server  # noqa: F401 - the fixture

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
async def operator(secure_server: SecureServer) -> AsyncIterator[Connection]:  # noqa: F811
    conn = await secure_server.connect("operator")
    yield conn
    await conn.close()


def logins(secure: SecureServer, monkeypatch: pytest.MonkeyPatch) -> ApiConfig:
    nats: dict[str, NatsLogin] = {}
    for role in ("agent", "operator", "auditor"):
        monkeypatch.setenv(f"TEST_API_{role.upper()}_PW", secure.passwords[role])
        nats[role] = NatsLogin(user=role, password_env=f"TEST_API_{role.upper()}_PW")
    return ApiConfig(nats=nats)  # type: ignore[arg-type]


async def test_each_role_acts_as_its_nats_user(
    secure_server: SecureServer,  # noqa: F811
    operator: Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    uri = "agent://acme/prod/roles"
    key, _ = await create_key(operator, uri, instance="h1", upstream=None, actor="operator")
    op_key, _ = await create_api_key(operator, "operator", "alice", actor="operator")
    au_key, _ = await create_api_key(operator, "auditor", "siem", actor="operator")
    config = GatewayConfig(port=0, api=logins(secure_server, monkeypatch))
    async with running_gateway(secure_server.settings("gateway"), config) as (_gw, server):
        url = f"http://127.0.0.1:{bound_port(server)}/api/v1"
        agent = {"Authorization": f"Bearer {key}"}
        async with await validating_client(url.removesuffix("/api/v1")) as c:
            assert (await c.post(f"{url}/heartbeat", headers=agent, json={})).status_code == 200
            r = await c.post(f"{url}/checkpoint", headers=agent, json={"state": {"n": 1}})
            assert r.status_code == 200, r.text

            async def ack() -> None:
                answer = (await c.get(f"{url}/control?killed=false&wait=20", headers=agent)).json()
                assert answer["killed"]
                r = await c.post(f"{url}/halted", headers=agent, json={"metadata": {"n": 1}})
                assert r.status_code == 200, r.text

            acking = asyncio.create_task(ack())
            kill = {"target": uri, "reason": "roles", "wait": 2}
            r = await c.post(f"{url}/kill", headers={"Authorization": f"Bearer {op_key}"}, json=kill)
            assert r.status_code == 200, r.text
            await acking
            assert [(i["instance"], i["status"]) for i in r.json()["instances"]] == [("h1", "paused")]
            events = await c.get(f"{url}/events?pattern={uri}", headers={"Authorization": f"Bearer {au_key}"})
            assert events.status_code == 200
            assert {"started", "kill", "halted"} <= {e["type"] for e in events.json()}
    async with AsyncMesh(connection=operator) as m:
        (held,) = await m.records(uri)
        assert held.record.actor == "api:alice"
        assert (await m.status(uri)).checkpoints["h1"].state == {"n": 1}


async def test_without_logins_the_gateway_user_is_refused_and_says_what_to_set(
    secure_server: SecureServer,  # noqa: F811
    operator: Connection,
) -> None:
    uri = "agent://acme/prod/nologin"
    key, _ = await create_key(operator, uri, instance="h1", upstream=None, actor="operator")
    op_key, _ = await create_api_key(operator, "operator", "bob", actor="operator")
    async with running_gateway(secure_server.settings("gateway"), GatewayConfig(port=0)) as (_gw, server):
        url = f"http://127.0.0.1:{bound_port(server)}/api/v1"
        async with await validating_client(url.removesuffix("/api/v1")) as c:
            r = await c.post(
                f"{url}/kill", headers={"Authorization": f"Bearer {op_key}"}, json={"target": uri}
            )
            assert r.status_code == 503, r.text
            assert "[api.nats.operator]" in r.json()["error"]["message"]
            r = await c.post(
                f"{url}/checkpoint", headers={"Authorization": f"Bearer {key}"}, json={"state": 1}
            )
            assert r.status_code == 503, r.text
            assert "[api.nats.agent]" in r.json()["error"]["message"]
    async with AsyncMesh(connection=operator) as m:
        assert await m.records(uri) == []  # refused by nats-server: nothing written

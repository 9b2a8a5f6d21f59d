"""Bad input to the HTTP API: 401, 403, 422, 400, 413, 429, each naming the problem; nothing is
half-applied and the gateway goes on serving."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway.api.apikeys import revoke_api_key
from gateway.api.config import ApiConfig
from gateway.config import GatewayConfig
from gateway.keys import hash_key
from gateway.keystore import revoke_key
from mesh.client.operator import AsyncMesh
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection
from tests.gateway.conftest import eventually
from tests.gateway.http_api_support import ApiGateway, api_gateway

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def api(settings: Settings, conn: Connection) -> AsyncIterator[ApiGateway]:
    config = GatewayConfig(port=0, api=ApiConfig(max_body_bytes=600_000, rate=0.5, burst=40))
    async with api_gateway(settings, conn, config) as g:
        yield g


def error(r: object) -> dict[str, str]:
    return r.json()["error"]  # type: ignore[attr-defined,no-any-return]


async def test_unknown_and_revoked_keys_get_401_without_the_key(api: ApiGateway) -> None:
    agent_key = await api.agent_key(instance="w1")
    for key in (None, "garbage", "mk-" + "x" * 43, "mo-" + "y" * 43):
        for method, path in (
            ("POST", "/api/v1/heartbeat"),
            ("GET", "/api/v1/agents"),
            ("GET", "/v1/mesh/agents"),
        ):
            r = await api.request(method, path, key)
            assert r.status_code == 401, (key, path)
            assert error(r)["code"] == "invalid_api_key"
            assert key is None or key not in r.text
    assert (await api.post("/api/v1/heartbeat", agent_key)).status_code == 200
    await revoke_key(api.conn, hash_key(agent_key)[:12], actor="tester")
    r = await eventually(lambda: _status_is(api, "POST", "/api/v1/heartbeat", agent_key, 401))
    assert (
        f"virtual key {hash_key(agent_key)[:12]} was revoked" in error(r)["message"]
        and agent_key not in r.text
    )
    await revoke_api_key(api.conn, hash_key(api.auditor_key)[:12], actor="tester")
    r = await eventually(lambda: _status_is(api, "GET", "/api/v1/events", api.auditor_key, 401))
    assert "was revoked" in error(r)["message"]


async def _status_is(api: ApiGateway, method: str, path: str, key: str, status: int) -> object:
    r = await api.request(method, path, key)
    return r if r.status_code == status else None


async def test_malformed_bodies_get_422_naming_the_field(api: ApiGateway, mesh: AsyncMesh) -> None:
    key = await api.agent_key(instance="w1")
    op = api.operator_key
    cases = [
        ("/api/v1/heartbeat", key, b"{not json", "body"),
        ("/api/v1/heartbeat", key, b"[1, 2]", "body"),
        ("/api/v1/heartbeat", key, b'{"metdata": {}}', "metdata"),
        ("/api/v1/heartbeat", key, b'{"interval": "soon"}', "interval"),
        ("/api/v1/heartbeat", key, b'{"status": "dancing"}', "status"),
        ("/api/v1/heartbeat", key, b'{"usage": {"emails": "many"}}', "usage.emails"),
        ("/api/v1/checkpoint", key, b"", "body"),
        ("/api/v1/halted", key, b'{"status": "gone"}', "status"),
        ("/api/v1/kill", op, b"{}", "target"),
        ("/api/v1/kill", op, b'{"target": "agent://acme/prod/mailer", "wait": 3600}', "wait"),
        ("/api/v1/kill", op, b'{"target": "agent://acme/prod/mailer", "grace": -1}', "grace"),
        ("/api/v1/resume", op, b'{"target": 5}', "target"),
    ]
    for path, who, body, field in cases:
        r = await api.post(path, who, content=body, headers={"content-type": "application/json"})
        assert r.status_code == 422, (path, body, r.text)
        assert error(r)["field"] == field, (path, body, r.text)
        assert field in error(r)["message"]
    for path, field in [
        ("/api/v1/events?since=yesterday", "since"),
        ("/api/v1/events?type=kil", "type"),
        ("/api/v1/events?limit=0", "limit"),
        ("/api/v1/agents?status=zombie", "status"),
        ("/api/v1/status", "target"),
        ("/v1/mesh/agents?health=meh", "health"),
    ]:
        r = await api.get(path, op)
        assert r.status_code == 422 and error(r)["field"] == field, (path, r.text)
    r = await api.get("/api/v1/control?killed=maybe", key)
    assert r.status_code == 422 and error(r)["field"] == "killed"
    # A checkpoint too large to store is refused whole.
    big = {"state": "x" * 530_000}
    r = await api.post("/api/v1/checkpoint", key, json=big)
    assert r.status_code == 422 and error(r)["field"] == "state"
    assert (await api.get("/api/v1/checkpoint", key)).json()["state"] is None
    assert await mesh.records() == []


async def test_malformed_targets_get_400_naming_the_part(api: ApiGateway, mesh: AsyncMesh) -> None:
    op = api.operator_key
    for target, part in [
        ("agent://acme/prod", "path"),
        ("http://acme/prod/mailer", "scheme"),
        ("agent://ac me/prod/mailer", "org"),
        ("agent://acme/prod/mailer#no way", "instance"),
    ]:
        r = await api.post("/api/v1/kill", op, json={"target": target})
        assert r.status_code == 400, (target, r.text)
        assert error(r)["code"] == "invalid_target" and error(r)["part"] == part, (target, r.text)
    r = await api.get("/api/v1/agents?pattern=agent://acme", op)
    assert r.status_code == 400
    r = await api.post("/v1/mesh/agents/acme.prod/kill", op)
    assert r.status_code == 400 and error(r)["part"] == "address_id"
    assert await mesh.records() == []  # nothing was written by any of them


async def test_instance_outside_the_key_is_403(api: ApiGateway) -> None:
    key = await api.agent_key(instance="w1")
    r = await api.post("/api/v1/heartbeat", key, headers={"X-Mesh-Instance": "w2"})
    assert r.status_code == 403 and error(r)["code"] == "instance_not_allowed"
    r = await api.post("/api/v1/heartbeat", key, json={"instance": "w2"})
    assert r.status_code == 403 and "acts as instance 'w1' only" in error(r)["message"]
    free = await api.agent_key()
    r = await api.post("/api/v1/heartbeat", free, json={"instance": "w2"}, headers={"X-Mesh-Instance": "w3"})
    assert r.status_code == 422 and error(r)["field"] == "instance"
    assert (await api.post("/api/v1/heartbeat", free, json={"instance": "w2"})).json()["instance"] == "w2"


async def test_oversized_body_is_413(api: ApiGateway) -> None:
    key = await api.agent_key(instance="w1")
    r = await api.post("/api/v1/heartbeat", key, content=b"{" + b" " * 700_000 + b"}")
    assert r.status_code == 413 and error(r)["code"] == "request_too_large"
    r = await api.post("/api/v1/kill", api.operator_key, content=b" " * 700_000)
    assert r.status_code == 413


async def test_rate_limit_is_per_key(api: ApiGateway) -> None:
    noisy = await api.agent_key(instance="w1")
    quiet = await api.agent_key("agent://acme/prod/other", instance="o1")
    codes = [(await api.post("/api/v1/heartbeat", noisy)).status_code for _ in range(45)]
    assert codes[:40] == [200] * 40 and 429 in codes[40:]
    r = await api.post("/api/v1/heartbeat", noisy)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    assert error(r)["code"] == "rate_limited" and "rate limit" in error(r)["message"]
    assert (await api.post("/api/v1/heartbeat", quiet)).status_code == 200
    # Still serving, and the rejections were counted.
    health = (await api.client.get(api.url + "/healthz")).json()
    assert health["ok"] and health["rejected"]["rate_limited"] >= 1

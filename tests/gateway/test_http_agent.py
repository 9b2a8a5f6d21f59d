"""HTTP agents against a real gateway and nats-server: heartbeat answers, long-poll, checkpoints,
acknowledgements in kill reports, and the statuses and events the controller derives from them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from mesh.client.operator import AsyncMesh
from mesh.protocol.models import AuditEvent, EventType, Heartbeat
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection
from tests.gateway.conftest import eventually
from tests.gateway.http_api_support import AGENT, ApiGateway, api_gateway

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def api(settings: Settings, conn: Connection) -> AsyncIterator[ApiGateway]:
    async with api_gateway(settings, conn) as g:
        yield g


class Watch:
    """Heartbeats and audit events as they pass on NATS (real subscriptions)."""

    def __init__(self) -> None:
        self.heartbeats: list[Heartbeat] = []
        self.events: list[AuditEvent] = []

    async def on_hb(self, msg: Any) -> None:
        self.heartbeats.append(Heartbeat.model_validate_json(msg.data))

    async def on_event(self, msg: Any) -> None:
        self.events.append(AuditEvent.model_validate_json(msg.data))

    def of(self, etype: EventType) -> list[AuditEvent]:
        return [e for e in self.events if e.type is etype]


@pytest.fixture
async def watch(conn: Connection) -> AsyncIterator[Watch]:
    w = Watch()
    subs = [
        await conn.nc.subscribe(conn.ns.heartbeat_wildcard, cb=w.on_hb),
        await conn.nc.subscribe(f"{conn.ns.prefix}.audit.>", cb=w.on_event),
    ]
    yield w
    for sub in subs:
        await sub.unsubscribe()


async def test_heartbeat_answers_and_is_published_with_a_started_event(api: ApiGateway, watch: Watch) -> None:
    key = await api.agent_key(instance="w1")
    r = await api.post("/api/v1/heartbeat", key, json={"metadata": {"sent": 3}, "usage": {"emails": 3}})
    assert r.status_code == 200
    body = r.json()
    assert body == {
        "agent_uri": AGENT, "instance": "w1", "killed": False, "action": None, "record": None,
        "records": [], "fail_closed": False, "acknowledged": False,
    }  # fmt: skip
    hb = await eventually(lambda: next((h for h in watch.heartbeats if h.instance == "w1"), None))
    assert hb.agent_uri == AGENT and hb.sdk_version == "http/1" and hb.hard_kill is False
    assert hb.metadata["sent"] == 3 and hb.usage == {"emails": 3.0} and hb.status.value == "active"
    started = await eventually(lambda: watch.of(EventType.STARTED))
    assert started[0].agent_uri == AGENT and started[0].instance == "w1" and started[0].chain is not None
    # An empty body is a heartbeat too; the second does not announce `started` again.
    assert (await api.post("/api/v1/heartbeat", key)).status_code == 200
    await eventually(lambda: len([h for h in watch.heartbeats if h.instance == "w1"]) >= 2)
    assert len(watch.of(EventType.STARTED)) == 1


async def test_heartbeat_of_a_killed_instance_names_the_record(api: ApiGateway, mesh: AsyncMesh) -> None:
    key = await api.agent_key(instance="w1")
    other = await api.agent_key("agent://acme/prod/other", instance="o1")
    report = await mesh.kill(AGENT, reason="sending spam", wait=0, action="raise")

    async def killed() -> Any:
        body = (await api.post("/api/v1/heartbeat", key)).json()
        return body if body["killed"] else None

    body = await eventually(killed)
    assert body["action"] == "raise"
    assert body["record"]["command_id"] == report.command_id
    assert body["record"]["reason"] == "sending spam" and body["record"]["target"] == AGENT
    assert [r["key"] for r in body["records"]] == ["acme.prod.mailer"]
    # Another agent is not covered.
    assert (await api.post("/api/v1/heartbeat", other)).json()["killed"] is False


async def test_long_poll_returns_when_the_kill_lands(api: ApiGateway, mesh: AsyncMesh) -> None:
    key = await api.agent_key(instance="w1")
    assert (await api.get("/api/v1/control", key)).json()["killed"] is False
    poll = asyncio.create_task(api.get("/api/v1/control?killed=false&wait=30", key))
    await asyncio.sleep(0)  # let the poll be sent; it must still be waiting after the kill is written
    assert not poll.done()
    report = await mesh.kill(AGENT, instance="w1", wait=0)
    answer = (await asyncio.wait_for(poll, 20)).json()
    assert answer["killed"] is True and answer["record"]["command_id"] == report.command_id
    assert answer["action"] == "pause"  # the HTTP agent's default on_kill
    # And the poll for the way back returns when the resume lands.
    back = asyncio.create_task(api.get("/api/v1/control?killed=true&wait=30", key))
    await mesh.resume(AGENT, instance="w1", wait=0)
    assert (await asyncio.wait_for(back, 20)).json()["killed"] is False


async def test_checkpoint_round_trip(api: ApiGateway, mesh: AsyncMesh) -> None:
    key = await api.agent_key(instance="w1")
    empty = (await api.get("/api/v1/checkpoint", key)).json()
    assert empty["state"] is None and empty["seq"] is None
    first = (await api.post("/api/v1/checkpoint", key, json={"state": {"batch": 4}})).json()
    second = (
        await api.post("/api/v1/checkpoint", key, json={"state": {"batch": 5}, "usage": {"emails": 9}})
    ).json()
    assert (first["seq"], second["seq"]) == (1, 2)
    got = (await api.get("/api/v1/checkpoint", key)).json()
    assert got["state"] == {"batch": 5} and got["seq"] == 2 and got["usage"] == {"emails": 9.0}
    # The operator API reads the same checkpoint the SDK would restore.
    status = await mesh.status(AGENT)
    assert status.checkpoints["w1"].state == {"batch": 5}


async def test_halted_puts_the_http_agent_in_the_kill_report(api: ApiGateway, mesh: AsyncMesh) -> None:
    from tests.operator_support import register

    key = await api.agent_key(instance="w1")
    await api.post("/api/v1/heartbeat", key)
    await register(api.conn, AGENT, "w1")  # the status the controller would have written

    async def agent_loop() -> None:
        answer = (await api.get("/api/v1/control?killed=false&wait=30", key)).json()
        assert answer["killed"]
        r = await api.post("/api/v1/halted", key, json={"metadata": {"sent": 41}, "checkpoint": {"batch": 7}})
        assert r.status_code == 200, r.text
        assert r.json()["acknowledged"] == [answer["record"]["command_id"]]

    loop = asyncio.create_task(agent_loop())
    await asyncio.sleep(0)
    report = await mesh.kill(AGENT, reason="test", wait=10)
    await asyncio.wait_for(loop, 10)
    assert report.missing == []
    (row,) = report.instances
    assert (row.instance, row.status) == ("w1", "paused")
    assert row.metadata["sent"] == 41 and row.checkpoint == {"batch": 7}
    # The acknowledgement saved the checkpoint too, and the next answer says so.
    assert (await api.get("/api/v1/checkpoint", key)).json()["state"] == {"batch": 7}
    assert (await api.post("/api/v1/heartbeat", key)).json()["acknowledged"] is True


async def test_halted_without_a_kill_is_a_conflict_and_writes_nothing(api: ApiGateway, watch: Watch) -> None:
    key = await api.agent_key(instance="w1")
    r = await api.post("/api/v1/halted", key, json={"checkpoint": {"batch": 1}})
    assert r.status_code == 409
    assert "no kill record is in force" in r.json()["error"]["message"]
    assert (await api.get("/api/v1/checkpoint", key)).json()["state"] is None
    assert watch.of(EventType.HALTED) == []


async def test_a_burst_of_heartbeats_is_coalesced_and_the_latest_is_published(
    api: ApiGateway, watch: Watch
) -> None:
    key = await api.agent_key(instance="w1")
    for i in range(50):
        assert (await api.post("/api/v1/heartbeat", key, json={"metadata": {"n": i}})).json()[
            "killed"
        ] is False

    def latest() -> Heartbeat | None:
        mine = [h for h in watch.heartbeats if h.instance == "w1"]
        return mine[-1] if mine and mine[-1].metadata.get("n") == 49 else None

    await eventually(latest)
    mine = [h for h in watch.heartbeats if h.instance == "w1"]
    # Asked before every action, it does not become one NATS message per call (the SDK's way too).
    assert len(mine) < 50
    assert [h.seq for h in mine] == sorted(h.seq for h in mine)

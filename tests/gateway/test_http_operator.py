"""Operator routes against real SDK agents: kill with the per-instance report, resume, and the
read routes, whose bodies are exactly what the CLI prints with --json (one serializer)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from mesh.client.operator import AsyncMesh
from mesh.protocol.models import Status
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection
from tests.cli.test_cli_commands import mesh_cli
from tests.gateway.http_api_support import ApiGateway, api_gateway
from tests.operator_support import URI, Worker, register, wait_until

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
async def api(settings: Settings, conn: Connection) -> AsyncIterator[ApiGateway]:
    async with api_gateway(settings, conn) as g:
        yield g


@pytest.fixture
async def workers(conn: Connection, settings: Settings) -> AsyncIterator[list[Worker]]:
    started = [await Worker(settings, URI, name).start() for name in ("w1", "w2")]
    for w in started:
        await register(conn, URI, w.agent.instance)
    await wait_until(lambda: all(w.done > 2 for w in started))
    yield started
    for w in started:
        await w.stop()


async def test_kill_reports_every_sdk_instance_and_resume_lets_them_go_on(
    api: ApiGateway, workers: list[Worker], mesh: AsyncMesh
) -> None:
    r = await api.post(
        "/api/v1/kill", api.operator_key, json={"target": URI, "reason": "broken template", "wait": 10}
    )
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["acked"] == 2 and report["missing"] == [] and report["target"] == URI
    assert {row["instance"] for row in report["instances"]} == {"w1", "w2"}
    assert all(row["status"] == "paused" and row["checkpoint"]["done"] >= 3 for row in report["instances"])
    frozen = [w.done for w in workers]
    held = await mesh.records(URI)
    assert [h.record.actor for h in held] == ["api:alice"]  # the key's name is the actor in the audit log
    assert held[0].record.reason == "broken template"

    for w in workers:  # as the controller records them after their acks
        await register(api.conn, URI, w.agent.instance, Status.PAUSED)
    rr = await api.post("/api/v1/resume", api.operator_key, json={"target": URI, "wait": 10})
    assert rr.status_code == 200 and rr.json()["acked"] == 2
    await wait_until(lambda: all(w.done > f for w, f in zip(workers, frozen, strict=True)))


async def test_read_routes_are_the_cli_json(
    api: ApiGateway, workers: list[Worker], settings: Settings
) -> None:
    await api.post("/api/v1/kill", api.operator_key, json={"target": f"{URI}#w2", "wait": 5})
    for path, args in [
        (f"/api/v1/status?target={URI}", ["status", URI, "--json"]),
        (f"/api/v1/agents?pattern={URI}", ["list", URI, "--json"]),
        ("/api/v1/agents?status=active", ["list", "--status", "active", "--json"]),
        ("/api/v1/policies", ["policy", "list", "--json"]),
        (f"/api/v1/usage?pattern={URI}", ["usage", URI, "--json"]),
    ]:
        body = (await api.get(path, api.operator_key)).json()
        code, out, err = await mesh_cli(settings, *args)
        assert code == 0, err
        cli = json.loads(out)
        if path.startswith("/api/v1/agents"):  # last_seen moves between the two reads
            strip = lambda rows: [{k: v for k, v in r.items() if k != "last_seen"} for r in rows]  # noqa: E731
            body, cli = strip(body), strip(cli)
        if path.startswith("/api/v1/status"):
            for part in (body, cli):
                for inst in part["instances"]:
                    inst.pop("last_seen"), inst.pop("metadata"), inst.pop("checkpoint")
        if path.startswith("/api/v1/usage"):
            body = {k: v for k, v in body.items() if k != "agents"} | {"n": len(body["agents"])}
            cli = {k: v for k, v in cli.items() if k != "agents"} | {"n": len(cli["agents"])}
        assert body == cli, path
    status = (await api.get(f"/api/v1/status?target={URI}", api.operator_key)).json()
    assert [r["target"] for r in status["records"]] == [f"{URI}#w2"]


async def test_policies_and_usage(api: ApiGateway, mesh: AsyncMesh) -> None:
    await mesh.set_policy("cap", "agent://acme/*/*", ["emails<=100/1h"])
    (policy,) = (await api.get("/api/v1/policies", api.operator_key)).json()
    assert policy["name"] == "cap" and policy["limits"] == ["emails<=100/1h"] and policy["action"] == "kill"
    await register(api.conn, URI, "w1")
    usage = (await api.get("/api/v1/usage?pattern=agent://acme/*/*&since=1h", api.operator_key)).json()
    assert usage["pattern"] == "agent://acme/*/*" and [a["agent_uri"] for a in usage["agents"]] == [URI]


async def test_events_follow_streams_new_events(api: ApiGateway, mesh: AsyncMesh) -> None:
    url = api.url + f"/api/v1/events?pattern={URI}&follow=true&type=kill"
    headers = {"Authorization": f"Bearer {api.auditor_key}"}
    async with api.client.stream("GET", url, headers=headers) as stream:
        api.validator.validate(stream)
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.aiter_lines()
        assert (await anext(lines)).startswith(":")  # the stream is open before the kill is written
        report = await mesh.kill(URI, reason="followed", wait=0)
        await mesh.resume(URI, wait=0)  # a resume is filtered out by type=kill
        got: dict[str, str] = {}
        while "data" not in got:
            line = await asyncio.wait_for(anext(lines), 20)
            if line:
                name, _, value = line.partition(": ")
                got[name] = value
    assert got["event"] == "kill"
    event = json.loads(got["data"])
    assert event["command_id"] == report.command_id and event["reason"] == "followed"


async def test_roles_mirror_the_nats_roles(api: ApiGateway) -> None:
    agent_key = await api.agent_key(instance="w1")
    r = await api.post("/api/v1/kill", api.auditor_key, json={"target": URI})
    assert r.status_code == 403 and r.json()["error"]["right"] == "kill"
    assert "lacks the right 'kill'" in r.json()["error"]["message"]
    for path in ("/api/v1/agents", f"/api/v1/status?target={URI}", "/api/v1/policies", "/api/v1/usage"):
        r = await api.get(path, api.auditor_key)
        assert r.status_code == 403, path
    assert (await api.get("/api/v1/events", api.auditor_key)).status_code == 200
    r = await api.post("/api/v1/kill", agent_key, json={"target": URI})
    assert r.status_code == 403 and r.json()["error"]["right"] == "kill"
    r = await api.post("/api/v1/heartbeat", api.operator_key)
    assert r.status_code == 403 and r.json()["error"]["right"] == "agent"
    # The kills above were all refused: nothing was written.
    assert (await api.get(f"/api/v1/status?target={URI}", api.operator_key)).json()["records"] == []

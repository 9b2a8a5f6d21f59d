"""An HTTP agent's whole life under a real controller, driven through the operator routes: the
statuses (active, paused, stale, lost, stopped) and audit events are the ones an SDK agent gets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection
from tests.gateway.http_api_support import AGENT, ApiGateway, api_gateway
from tests.integration.controller_helpers import eventually, fast_options, running_controller

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
async def api(settings: Settings, conn: Connection) -> AsyncIterator[ApiGateway]:
    async with running_controller(settings, fast_options(lost_after=2.0)), api_gateway(settings, conn) as g:
        yield g


async def _status(api: ApiGateway, want: str, sent: int | None = None) -> Any:
    rows = (await api.get(f"/api/v1/agents?pattern={AGENT}", api.operator_key)).json()
    row = next((r for r in rows if r["instance"] == "w1"), None)
    if row is None or row["status"] != want:
        return None
    return row if sent is None or row["metadata"].get("sent") == sent else None


async def test_statuses_and_events_follow_the_http_agent(api: ApiGateway) -> None:
    key = await api.agent_key(instance="w1")
    hb = {"interval": 0.2, "metadata": {"sent": 1}}
    assert (await api.post("/api/v1/heartbeat", key, json=hb)).status_code == 200
    # `started` may make it active first; the heartbeat's metadata follows.
    row = await eventually(lambda: _status(api, "active", sent=1), what="active")
    assert row["metadata"]["via"] == "http"

    async def agent() -> dict[str, Any]:
        answer = (await api.get("/api/v1/control?killed=false&wait=20", key)).json()
        ack = await api.post("/api/v1/halted", key, json={"metadata": {"sent": 5}, "checkpoint": {"at": 5}})
        assert ack.status_code == 200
        return answer  # type: ignore[no-any-return]

    loop = asyncio.create_task(agent())
    r = await api.post("/api/v1/kill", api.operator_key, json={"target": AGENT, "reason": "spam", "wait": 10})
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["acked"] == 1 and report["missing"] == []
    assert report["instances"][0]["metadata"]["sent"] == 5 and report["instances"][0]["checkpoint"] == {
        "at": 5
    }
    assert (await loop)["record"]["command_id"] == report["command_id"]
    await eventually(lambda: _status(api, "paused"), what="paused")

    # Resume: the next answer lets it act, and that is when it is reported resumed.
    resume = asyncio.create_task(
        api.post("/api/v1/resume", api.operator_key, json={"target": AGENT, "wait": 10})
    )
    back = (await api.get("/api/v1/control?killed=true&wait=20", key)).json()
    assert back["killed"] is False
    rr = (await resume).json()
    assert rr["acked"] == 1 and rr["instances"][0]["instance"] == "w1" and rr["still_held_by"] == []
    await api.post("/api/v1/heartbeat", key, json=hb)
    await eventually(lambda: _status(api, "active"), what="active again")

    # Silence: stale after 3 intervals, then lost; a heartbeat brings it back.
    await eventually(lambda: _status(api, "stale"), what="stale")
    await eventually(lambda: _status(api, "lost"), what="lost")
    await api.post("/api/v1/heartbeat", key, json=hb)
    await eventually(lambda: _status(api, "active"), what="recovered")
    await api.post("/api/v1/heartbeat", key, json={**hb, "status": "stopped"})
    await eventually(lambda: _status(api, "stopped"), what="stopped")

    events = (await api.get(f"/api/v1/events?pattern={AGENT}", api.auditor_key)).json()
    types = [e["type"] for e in events if e["instance"] in ("w1", None)]
    for expected in (
        "started",
        "kill",
        "halted",
        "resume",
        "resumed",
        "stale",
        "lost",
        "recovered",
        "stopped",
    ):
        assert expected in types, (expected, types)
    assert types.index("kill") < types.index("halted") < types.index("resume") < types.index("resumed")
    only = (await api.get(f"/api/v1/events?pattern={AGENT}&type=halted,resumed", api.auditor_key)).json()
    assert {e["type"] for e in only} == {"halted", "resumed"}

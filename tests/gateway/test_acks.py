"""The gateway answers kills and resumes for the instances it serves: `mesh kill` sees them halt."""

from __future__ import annotations

import httpx
import pytest

from mesh.client.operator import AsyncMesh
from mesh.protocol.models import Status
from tests.gateway.conftest import AGENT, HeartbeatWatch, Running, eventually

pytestmark = pytest.mark.timeout(60)

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


async def test_kill_and_resume_reports_list_gateway_instances(
    gateway: Running, mesh: AsyncMesh, heartbeats: HeartbeatWatch
) -> None:
    key = await gateway.key()
    async with httpx.AsyncClient(timeout=30) as c:
        for instance in ("w1", "w2"):
            h = {"authorization": f"Bearer {key}", "x-mesh-instance": instance}
            resp = await c.post(gateway.url + "/v1/chat/completions", json=CHAT, headers=h)
            assert resp.status_code == 200
    await eventually(lambda: len(heartbeats.last) == 2)
    report = await mesh.kill(AGENT, instance="w1", reason="just w1", wait=3)
    rows = {(r.instance, r.status) for r in report.instances}
    assert rows == {("w1", "paused")}, report
    w1 = f"{AGENT}#w1"
    await eventually(lambda: heartbeats.last[w1].status == Status.PAUSED)
    assert heartbeats.last[f"{AGENT}#w2"].status == Status.ACTIVE
    resumed = await mesh.resume(AGENT, instance="w1", reason="ok", wait=3)
    assert {(r.instance, r.status) for r in resumed.instances} == {("w1", "resumed")}, resumed
    await eventually(lambda: heartbeats.last[w1].status == Status.ACTIVE)

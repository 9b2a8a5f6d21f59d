"""The dashboard under nats.conf: it talks to NATS with its own credentials, so NATS permissions
still apply. With a role that may not write kill records, a kill with the right dashboard token
is still refused, by the server, with a clear error; with the operator role it goes through."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest

from controller.dashboard.config import DashboardConfig
from controller.dashboard.server import run_dashboard
from mesh.client.operator import AsyncMesh
from mesh.transport import natserrors
from tests.waiting import HANG

from .conftest import SecureServer

pytestmark = pytest.mark.timeout(90)

TOKEN = "dashboard-permissions-token-0123"
TARGET = "agent://acme/prod/dash-perm"


@contextlib.asynccontextmanager
async def dashboard_as(secure: SecureServer, role: str) -> AsyncIterator[httpx.AsyncClient]:
    stop = asyncio.Event()
    started: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    config = DashboardConfig(settings=secure.settings(role), port=0, token=TOKEN, health_interval=1.0)
    task = asyncio.create_task(run_dashboard(config, stop=stop, on_started=started.set_result))
    try:
        url = await asyncio.wait_for(started, HANG)
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=HANG) as client:
            yield client
    finally:
        stop.set()
        await asyncio.wait_for(task, HANG)


async def _records(secure: SecureServer) -> list[str]:
    async with AsyncMesh(secure.settings("operator")) as op:
        return [h.key for h in await op.records(TARGET)]


async def test_a_dashboard_with_auditor_credentials_cannot_kill(secure_server: SecureServer) -> None:
    natserrors._VIOLATIONS.clear()
    async with dashboard_as(secure_server, "auditor") as client:
        body = {"target": TARGET, "reason": "from a read-only role", "user": "alice"}
        response = await client.post("api/kill", json=body)
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert error == (
        "NATS refused the dashboard's credentials: permission denied: this user may not write kill records"
    )
    assert await _records(secure_server) == []  # read back as operator: nothing was written


async def test_a_dashboard_with_operator_credentials_kills_and_resumes(secure_server: SecureServer) -> None:
    async with dashboard_as(secure_server, "operator") as client:
        body = {"target": TARGET, "reason": "allowed", "user": "alice"}
        killed = await client.post("api/kill", json=body)
        assert killed.status_code == 200, killed.text
        assert await _records(secure_server) == ["acme.prod.dash-perm"]
        resumed = await client.post("api/resume", json=body)
        assert resumed.status_code == 200, resumed.text
    assert await _records(secure_server) == []

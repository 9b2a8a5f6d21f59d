"""``mesh up --gateway`` serves the HTTP API, and the CLI mints and revokes its API keys."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import pytest

from mesh.runtime.settings import Settings
from tests.cli.test_cli_commands import env_for
from tests.gateway.conftest import AGENT, eventually
from tests.gateway.http_api_support import validating_client
from tests.gateway.test_mesh_up_policy import _line, _run
from tests.operator_support import MESH
from tests.ports import free_port

pytestmark = pytest.mark.timeout(120)


async def test_mesh_up_serves_the_api(tmp_path: Path) -> None:
    port = free_port()
    settings = Settings(nats_url=f"nats://127.0.0.1:{port}", prefix="mesh")
    env = env_for(settings, MESH_ACTOR="alice")
    proc = await asyncio.create_subprocess_exec(
        MESH, "up", "--port", str(port), "--data-dir", str(tmp_path / "store"), "--no-dashboard",
        "--gateway", "--gateway-port", "0",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        gw_port = (await _line(proc.stdout, r"gateway: http://127\.0\.0\.1:(\d+)")).group(1)
        url = f"http://127.0.0.1:{gw_port}"
        agent_key = (await _run(env, "gateway", "key", "create", AGENT, "--instance", "w1")).strip()
        created = json.loads(await _run(env, "gateway", "api-key", "create", "ci-bot", "--json"))
        assert created["role"] == "operator" and created["name"] == "ci-bot"
        op = {"Authorization": f"Bearer {created['key']}"}
        listed = json.loads(await _run(env, "gateway", "api-key", "list", "--json"))
        assert [k["id"] for k in listed] == [created["id"]] and "key" not in listed[0]
        async with await validating_client(url) as c:
            assert (await c.get(f"{url}/api/v1/openapi.json")).json()["openapi"] == "3.1.0"
            agent = {"Authorization": f"Bearer {agent_key}"}
            assert (await c.post(f"{url}/api/v1/heartbeat", headers=agent, json={"interval": 1})).json()[
                "killed"
            ] is False

            async def active() -> Any:  # the controller of `mesh up` recorded it
                rows = (await c.get(f"{url}/api/v1/agents", headers=op)).json()
                return [r for r in rows if r["instance"] == "w1" and r["status"] == "active"]

            await eventually(active, timeout=30)
            r = await c.post(f"{url}/api/v1/kill", headers=op, json={"target": AGENT, "wait": 0})
            assert r.status_code == 200
            assert (await c.post(f"{url}/api/v1/heartbeat", headers=agent, json={})).json()["killed"] is True
            await _run(env, "gateway", "api-key", "revoke", created["id"])

            async def revoked() -> bool:
                return (await c.get(f"{url}/api/v1/agents", headers=op)).status_code == 401

            await eventually(revoked)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert created["key"] not in err.decode() and agent_key not in err.decode()

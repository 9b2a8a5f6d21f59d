"""examples/http_agent.sh (curl) and examples/http_agent.mjs (Node) against a real gateway: they
heartbeat, stop on a kill, acknowledge it in the kill report, and resume from their checkpoint."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mesh.client.operator import AsyncMesh
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection
from tests.conftest import missing_tool
from tests.gateway.conftest import eventually
from tests.gateway.http_api_support import AGENT, ApiGateway, api_gateway
from tests.operator_support import register

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
RUNNERS = {
    "sh": ["sh", str(ROOT / "examples/http_agent.sh")],
    "node": ["node", str(ROOT / "examples/http_agent.mjs")],
}


@pytest.fixture
async def api(settings: Settings, conn: Connection) -> AsyncIterator[ApiGateway]:
    async with api_gateway(settings, conn) as g:
        yield g


class Example:
    """The example as a subprocess, its output collected line by line."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            self.lines.append(raw.decode().strip())

    async def saw(self, prefix: str) -> bool:
        if self.proc.returncode is not None and not any(x.startswith(prefix) for x in self.lines):
            err = await self.proc.stderr.read() if self.proc.stderr else b""
            raise AssertionError(f"example exited {self.proc.returncode}: {self.lines} {err.decode()}")
        return any(x.startswith(prefix) for x in self.lines)


async def start(kind: str, api: ApiGateway, instance: str, steps: int) -> Example:
    if shutil.which(RUNNERS[kind][0]) is None or (kind == "sh" and shutil.which("curl") is None):
        missing_tool(f"{RUNNERS[kind][0]} (and curl for the shell example) to run examples/http_agent.*")
    key = await api.agent_key(instance=instance)
    await register(api.conn, AGENT, instance)  # as the controller would, so the kill expects it
    env = {**os.environ, "MESH_URL": api.url, "MESH_KEY": key, "STEPS": str(steps), "STEP_SECONDS": "0.05"}
    proc = await asyncio.create_subprocess_exec(
        *RUNNERS[kind], env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    return Example(proc)


@pytest.mark.parametrize("kind", ["sh", "node"])
async def test_example_stops_acknowledges_and_resumes(kind: str, api: ApiGateway, mesh: AsyncMesh) -> None:
    instance = f"{kind}1"
    ex = await start(kind, api, instance, steps=12)
    await eventually(lambda: ex.saw("step 3"))
    report = await mesh.kill(AGENT, instance=instance, reason="example", wait=15)
    (row,) = report.instances
    assert row.instance == instance and row.status == "paused" and report.missing == []
    stopped_at = row.metadata["done"]
    assert row.checkpoint == {"done": stopped_at} and stopped_at >= 3
    await eventually(lambda: ex.saw("acknowledged"))
    assert f"step {stopped_at + 1}" not in ex.lines  # no step after the kill
    await mesh.resume(AGENT, instance=instance, wait=0)
    await eventually(lambda: ex.saw(f"resumed at step {stopped_at}"))
    assert await asyncio.wait_for(ex.proc.wait(), 30) == 0
    await ex.reader
    assert ex.lines[-2:] == ["step 12", "stopped"]
    steps = [int(x.split()[1]) for x in ex.lines if x.startswith("step ")]
    assert steps == list(range(1, 13))  # every step once, none lost or repeated across the kill
    checkpoint = (await mesh.status(AGENT)).checkpoints[instance]
    assert checkpoint.state == {"done": 12}


async def test_shell_example_ends_on_a_raise_kill(api: ApiGateway, mesh: AsyncMesh) -> None:
    ex = await start("sh", api, "sh2", steps=0)
    await eventually(lambda: ex.saw("step 1"))
    report = await mesh.kill(AGENT, instance="sh2", action="raise", wait=15)
    assert [r.status for r in report.instances] == ["killed"]
    assert await asyncio.wait_for(ex.proc.wait(), 30) == 0
    await ex.reader
    assert ex.lines[-3:] == [f"killed (action raise) at step {report.instances[0].metadata['done']}",
                             "acknowledged", "stopped"]  # fmt: skip

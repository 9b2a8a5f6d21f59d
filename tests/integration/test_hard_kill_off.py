"""``hard_kill``: by default a process stuck past a kill's grace ends with exit status 86;
``hard_kill=False`` opts out (it is never terminated), and ``mesh list`` shows the opt-out."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent_sdk import TERMINATED_EXIT_CODE
from mesh.client.operator import AsyncMesh
from mesh.protocol.models import InstanceStatus
from mesh.runtime.settings import Settings
from tests.integration.controller_helpers import ControllerProcess
from tests.integration.sdk_helpers import Ops
from tests.operator_support import MESH
from tests.waiting import wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(120)]

URI = "agent://acme/prod/stuck"
ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).parent / "agents" / "worker.py"


def _spawn(settings: Settings, instance: str, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, str(WORKER), "--url", settings.nats_url, "--prefix", settings.prefix]
    cmd += ["--uri", URI, "--instance", instance, "--mode", "stuck", *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log.open("wb"), env=env, cwd=ROOT)


def _acted(log: Path) -> bool:
    return '"event": "action"' in log.read_text()


def _mesh(settings: Settings, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NATS_", "MESH_"))}
    env |= {"NATS_URL": settings.nats_url, "MESH_PREFIX": settings.prefix}
    result = subprocess.run([MESH, *args], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _rows(ops: Ops) -> dict[str, InstanceStatus]:
    """What the controller has written, read through the operator API (cheaper than a CLI run)."""

    async def read() -> list[InstanceStatus]:
        async with AsyncMesh(connection=ops.conn) as op:
            return await op.list_instances(URI)

    return {r.instance: r for r in ops.portal.call(read)}


@pytest.fixture
def procs(settings: Settings, tmp_path: Path) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    started: dict[str, subprocess.Popen[bytes]] = {}
    yield started
    for proc in started.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_stuck_past_grace_exit_86_unless_hard_kill_is_off(
    settings: Settings, tmp_path: Path, procs: dict[str, subprocess.Popen[bytes]]
) -> None:
    ops = Ops(settings)
    ctl = ControllerProcess(
        settings, tmp_path / "controller.log", "--sweep-every", "0.2", "--refresh-every", "0.5"
    )
    try:
        logs = {name: tmp_path / f"{name}.log" for name in ("hard", "soft")}
        procs["hard"] = _spawn(settings, "hard", logs["hard"])
        procs["soft"] = _spawn(settings, "soft", logs["soft"], "--no-hard-kill")
        for name, log in logs.items():
            wait_until(lambda log=log: _acted(log), what=f"{name} to act, then block (no safe point)")
        wait_until(lambda: set(_rows(ops)) == {"hard", "soft"}, what="the controller to list both")

        # mesh list shows the opt-out, and only on the instance that opted out
        lines = {line.split()[1]: line for line in _mesh(settings, "list", URI).splitlines()[1:-1]}
        assert "(no hard kill)" in lines["soft"] and "(no hard kill)" not in lines["hard"]

        _, _, record = ops.kill(URI, grace=0.5, reason="stuck")
        assert procs["hard"].wait(60) == 86 == TERMINATED_EXIT_CODE  # the README's literal code

        # The opted-out instance had the same grace and more: it is alive, and its SDK thread
        # still heartbeats (the controller writes a last_seen later than the other's end).
        ended = datetime.now(UTC)
        wait_until(
            lambda: _rows(ops)["soft"].last_seen > ended,
            what="a heartbeat of the opted-out instance after the other was terminated",
        )
        assert procs["soft"].poll() is None
        terminated = ops.events("terminated")
        assert [e.instance for e in terminated] == ["hard"]
        assert terminated[0].command_id == record.command_id
    finally:
        ctl.terminate()
        ops.close()

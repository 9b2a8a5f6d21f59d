"""An agent process frozen with SIGSTOP: stale, then lost; SIGCONT brings it back (recovered). Frozen
again while a kill is issued: after SIGCONT it halts before its next action."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from controller import ControllerOptions, serve
from mesh.client.operator import AsyncMesh
from mesh.protocol.models import EventType, Status
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection
from mesh.transport.provision import ProvisionOptions, provision
from mesh.transport.server import EmbeddedServer

from .helpers import all_events, count, eventually

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(180)]

URI = "agent://acme/prod/frozen"
ROOT = Path(__file__).resolve().parents[2]
FAST = ControllerOptions(
    lost_after=3.0, stale_intervals=3.0, sweep_every=0.1, refresh_every=0.5, flush_every=0.05
)


class Proc:
    """The agent subprocess and the JSON lines it has printed so far.

    Its stdout is a file, not a pipe: each line is flushed as it is printed, so what the file
    holds once the process is stopped is exactly what it did before it was stopped.
    """

    def __init__(self, settings: Settings, out: Path) -> None:
        self.out = out
        with out.open("wb") as sink:
            self.p = subprocess.Popen(
                [sys.executable, "-m", "tests.chaos.agent_proc", "--url", settings.nats_url,
                 "--prefix", settings.prefix, "--uri", URI, "--instance", "f1"],
                stdout=sink, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, cwd=ROOT,
            )  # fmt: skip

    @property
    def lines(self) -> list[dict[str, Any]]:
        out = []
        for raw in self.out.read_text().splitlines():
            try:
                line = json.loads(raw)
            except ValueError:
                continue  # the SDK's own log lines, or a line still being written
            if isinstance(line, dict) and "t" in line:
                out.append(line)
        return out

    def actions(self) -> list[int]:
        return [line["action"] for line in self.lines if "action" in line]

    def stopped(self) -> bool:
        """The kernel has stopped the process (state T in /proc), so it can print nothing more."""
        stat = Path(f"/proc/{self.p.pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] in ("T", "t")

    def close(self) -> None:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGCONT)
            self.p.kill()
        self.p.wait(10)


@pytest.fixture
async def frozen_setup(own_server: EmbeddedServer, tmp_path: Path) -> Any:
    settings = Settings(nats_url=own_server.url, prefix="c" + uuid.uuid4().hex[:8], actor="chaos")
    async with Connection(settings) as conn:
        await provision(conn.js, conn.ns, ProvisionOptions())
    stop = asyncio.Event()
    ctl = asyncio.create_task(serve(settings, stop=stop, options=FAST))
    proc = Proc(settings, tmp_path / "agent.out")
    try:
        async with AsyncMesh(settings) as op:
            await eventually(lambda: status_is(op, Status.ACTIVE), what="active")
            await eventually(lambda: len(proc.actions()) > 3, what="the agent to work")
            yield settings, op, proc
    finally:
        proc.close()
        stop.set()
        await asyncio.wait_for(ctl, 20)


async def status_is(op: AsyncMesh, status: Status) -> bool:
    rows = await op.list_instances(URI)
    return bool(rows) and rows[0].status is status


async def test_sigstop_goes_stale_then_lost_and_sigcont_recovers(frozen_setup: Any) -> None:
    settings, op, proc = frozen_setup
    proc.p.send_signal(signal.SIGSTOP)
    await eventually(lambda: status_is(op, Status.STALE), what="stale")
    await eventually(lambda: status_is(op, Status.LOST), what="lost")
    proc.p.send_signal(signal.SIGCONT)
    await eventually(lambda: status_is(op, Status.ACTIVE), what="active again")
    events = await all_events(settings)
    assert count(events, EventType.STALE)[(URI, "f1")] == 1
    assert count(events, EventType.LOST)[(URI, "f1")] == 1
    assert count(events, EventType.RECOVERED)[(URI, "f1")] == 1
    n = len(proc.actions())
    await eventually(lambda: len(proc.actions()) > n, what="work after thawing")


async def test_killed_while_frozen_halts_before_its_next_action(frozen_setup: Any) -> None:
    settings, op, proc = frozen_setup
    proc.p.send_signal(signal.SIGSTOP)
    await eventually(proc.stopped, what="the kernel to stop the agent")
    acted = proc.actions()  # everything it did before the freeze, and so before the kill
    report = await op.kill(URI, reason="chaos: frozen agent", wait=0.5)
    assert [s.instance for s in report.missing] == ["f1"], "a frozen instance cannot acknowledge"
    proc.p.send_signal(signal.SIGCONT)
    await asyncio.to_thread(proc.p.wait, 60)
    assert proc.p.returncode == 0
    assert proc.lines[-1].get("killed") is True
    # killed, then stopped: the process left its `with Agent` block and exited
    await eventually(lambda: status_is(op, Status.STOPPED), what="status stopped after the kill")
    halted = count(await all_events(settings), EventType.HALTED, revision=report.revision)
    assert halted == {(URI, "f1"): 1}
    assert acted, "the agent worked before the freeze"
    assert proc.actions() == acted, "the agent acted after a kill issued while it was frozen"

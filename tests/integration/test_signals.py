"""Ctrl+C and SIGTERM end `mesh controller`, `mesh dashboard` and agents cleanly, at any moment (issue 22)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from agent_sdk import AsyncAgent
from mesh.client.operator import AsyncMesh
from mesh.protocol.models import EventType
from mesh.runtime.settings import Settings
from mesh.transport.server import EmbeddedServer
from tests.integration.test_mesh_up_supervision import _children
from tests.ports import free_port

BIN = Path(sys.executable).parent
MESH = str(BIN / "mesh")
WORKER = str(Path(__file__).parent / "agents" / "worker.py")
URI = "agent://acme/prod/mailer"
EXIT_BOUND = 30.0  # only stops a hang: a clean exit takes about a second

pytestmark = pytest.mark.timeout(180)



class Proc:
    """A CLI process in a process group of its own, as a terminal runs it, logging JSON to a file."""

    def __init__(self, args: list[str], settings: Settings, log: Path) -> None:
        self.log = log
        self.err = open(log, "w+")  # noqa: SIM115 - closed in end()
        self.proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=self.err, start_new_session=True,
            env={**os.environ, "NATS_URL": settings.nats_url, "MESH_PREFIX": settings.prefix,
                 "MESH_LOG_FORMAT": "json"},
        )  # fmt: skip

    def text(self) -> str:
        if not self.err.closed:
            self.err.flush()
        return self.log.read_text()

    def wait_for(self, fragment: str, bound: float = 60.0) -> None:
        deadline = time.monotonic() + bound
        while time.monotonic() < deadline:
            if fragment in self.text():
                return
            assert self.proc.poll() is None, (
                f"exited {self.proc.returncode} before {fragment!r}:\n{self.text()}"
            )
            time.sleep(0.05)
        raise AssertionError(f"{fragment!r} never logged:\n{self.text()}")

    def wait_connected(self, port: int, bound: float = 60.0) -> None:
        """Wait until the process has a TCP connection to ``port``: it is running our code, mid start-up.

        A signal before the interpreter runs any of our code takes the default action, as for
        any program; the moment worth testing is the one after that.
        """
        deadline = time.monotonic() + bound
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"exited {self.proc.returncode}:\n{self.text()}"
            try:
                conns = psutil.Process(self.proc.pid).net_connections(kind="tcp")
            except psutil.NoSuchProcess:
                continue
            if any(c.raddr and c.raddr.port == port for c in conns):
                return
            time.sleep(0.01)
        raise AssertionError(f"never connected to port {port}:\n{self.text()}")

    def end(self, how: str) -> int:
        if how == "sigint-group":
            os.killpg(self.proc.pid, signal.SIGINT)
        else:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(EXIT_BOUND)
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.err.close()


def _agent(
    settings: Settings, instance: str, mode: str = "loop", on_kill: str = "raise"
) -> subprocess.Popen[str]:
    # The worker logs every action: into a file, as a pipe nobody drains would fill and block it.
    log = Path(tempfile.mkstemp(prefix=f"worker-{instance}-", suffix=".log")[1])
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, WORKER, "--url", settings.nats_url, "--prefix", settings.prefix, "--uri", URI,
             "--instance", instance, "--mode", mode, "--on-kill", on_kill],
            stdout=subprocess.DEVNULL, stderr=err, text=True,
        )  # fmt: skip
    deadline = time.monotonic() + EXIT_BOUND
    while time.monotonic() < deadline and proc.poll() is None:
        if '"ready"' in log.read_text():
            return proc
        time.sleep(0.02)
    tail = log.read_text()[-2000:]
    raise AssertionError(f"agent {instance} never became ready (exit {proc.poll()}): {tail}")


def _kill(settings: Settings, wait: float = 30) -> None:
    out = subprocess.run(
        [MESH, "kill", URI, "--json", "--wait", str(wait), "--reason", "test"],
        capture_output=True, text=True, timeout=90,
        env={**os.environ, "NATS_URL": settings.nats_url, "MESH_PREFIX": settings.prefix},
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr


def _reap(agents: list[subprocess.Popen[str]]) -> None:
    for agent in agents:
        if agent.poll() is None:
            agent.kill()
        agent.wait(10)


def _bring_to(moment: str, settings: Settings, server: EmbeddedServer) -> list[subprocess.Popen[str]]:
    """Set the scene for ``moment``; the agents started on the way are returned."""
    if moment == "start-up":
        return []
    agents = [_agent(settings, f"w{i}") for i in range(2)]
    if moment in ("right-after-kill", "agents-exited"):
        _kill(settings)
    if moment == "agents-exited":
        for agent in agents:
            agent.wait(EXIT_BOUND)
    if moment == "server-gone":
        server.kill()
    return agents


MOMENTS = ["start-up", "agents-live", "right-after-kill", "agents-exited", "server-gone"]


@pytest.mark.parametrize("how", ["sigint-group", "sigterm"])
@pytest.mark.parametrize("moment", MOMENTS)
def test_mesh_controller_exits_0_with_nothing_left(
    own_server: EmbeddedServer, prefix: str, tmp_path: Path, moment: str, how: str
) -> None:
    settings = Settings(nats_url=own_server.url, prefix=prefix)
    ctl = Proc([MESH, "controller", "--lease-ttl", "3"], settings, tmp_path / "controller.log")
    agents: list[subprocess.Popen[str]] = []
    try:
        if moment == "start-up":
            ctl.wait_connected(own_server.port)
        else:
            ctl.wait_for('"active"')
        agents = _bring_to(moment, settings, own_server)
    finally:
        code = ctl.end(how)
        _reap(agents)
    log = ctl.text()
    assert code == 0, log
    assert "did not stop" not in log
    assert "Traceback" not in log
    assert _children(ctl.proc.pid) == []


@pytest.mark.parametrize("how", ["sigint-group", "sigterm"])
@pytest.mark.parametrize("moment", ["start-up", "serving", "server-gone"])
def test_mesh_dashboard_exits_0_with_nothing_left(
    own_server: EmbeddedServer, prefix: str, tmp_path: Path, moment: str, how: str
) -> None:
    settings = Settings(nats_url=own_server.url, prefix=prefix)
    dash = Proc([MESH, "dashboard", "--port", str(free_port())], settings, tmp_path / "dashboard.log")
    try:
        if moment == "start-up":
            dash.wait_connected(own_server.port)
        else:
            dash.wait_for("dashboard listening")
        if moment == "server-gone":
            own_server.kill()
    finally:
        code = dash.end(how)
    assert code == 0, dash.text()
    assert "Traceback" not in dash.text()


async def _events(settings: Settings, instance: str, types: tuple[EventType, ...]) -> list[str]:
    async with AsyncMesh(settings) as mesh:
        return [
            str(e.data.get("status"))
            async for e in mesh.events(URI)
            if e.instance == instance and e.type in types
        ]


def _reported(settings: Settings, instance: str, *types: EventType) -> list[str]:
    """The statuses in ``instance``'s events of ``types``, once there is one (or the hang bound passed)."""
    deadline = time.monotonic() + EXIT_BOUND
    while True:
        found = asyncio.run(_events(settings, instance, types))
        if found or time.monotonic() > deadline:
            return found
        # sleep-ok: the poll interval: the loop re-checks until the condition holds or the deadline passes
        time.sleep(0.1)


def _status_reported(settings: Settings, instance: str) -> list[str]:
    return _reported(settings, instance, EventType.STOPPED, EventType.CRASHED)


@pytest.mark.parametrize("mode", ["loop", "async"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_agent_given_a_signal_exits_and_reports_stopped(
    settings: Settings, mode: str, sig: signal.Signals
) -> None:
    agent = _agent(settings, "sig", mode)
    try:
        agent.send_signal(sig)
        code = agent.wait(EXIT_BOUND)
    finally:
        _reap([agent])
    assert code != 0  # it was ended by the signal, not by its own choice
    assert _status_reported(settings, "sig") == ["stopped"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_paused_agent_given_a_signal_exits_and_reports_stopped(
    settings: Settings, sig: signal.Signals
) -> None:
    agent = _agent(settings, "parked", on_kill="pause")
    try:
        _kill(settings, wait=0.5)  # no controller knows the instance: its ack is awaited below
        assert _reported(settings, "parked", EventType.HALTED) == ["paused"]
        assert agent.poll() is None
        agent.send_signal(sig)
        code = agent.wait(EXIT_BOUND)
    finally:
        _reap([agent])
    assert code != 0
    assert _status_reported(settings, "parked") == ["stopped"]


def test_a_cancel_that_lands_mid_step_still_reports_stopped(settings: Settings) -> None:
    """asyncio.run's Ctrl+C handler cancels the main task from a signal handler, which may run in
    the middle of the task's step (here: the task cancels itself, then reaches a safe point). The
    safe point sees the request at once, and the pending cancel then fell on the stop's shield:
    asyncio.run cancelled the report with the leftover tasks (1 run in 5 of the test above)."""

    async def main() -> None:
        async with AsyncAgent(URI, instance="midstep", settings=settings, heartbeat_interval=0.5) as agent:
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
            await agent.sleep(0.01)

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(main())
    assert _status_reported(settings, "midstep") == ["stopped"]

"""``mesh up`` as a supervisor: a dead nats-server is restarted; Ctrl+C always ends it, leaving nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.ports import free_port

BIN = Path(sys.executable).parent
MESH = str(BIN / "mesh")
WORKER = str(Path(__file__).parent / "agents" / "worker.py")
URI = "agent://acme/prod/mailer"

pytestmark = pytest.mark.timeout(240)



def _children(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (zombies included: they are leftovers too)."""
    out = subprocess.run(["ps", "-eo", "pid=,ppid="], capture_output=True, text=True, check=True).stdout
    parents: dict[int, list[int]] = {}
    for line in out.splitlines():
        child, parent = (int(x) for x in line.split())
        parents.setdefault(parent, []).append(child)
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class Up:
    """A ``mesh up`` in a process group of its own, as a terminal runs it."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.err = open(tmp / "up.err", "w+")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [MESH, "up", "--port", str(self.port), "--data-dir", str(tmp / "store"), "--no-dashboard"],
            stdout=subprocess.PIPE, stderr=self.err, text=True, start_new_session=True,
            env={**os.environ, "MESH_LOG_FORMAT": "json"},
        )  # fmt: skip
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert "NATS_URL=" in line, (line, self.stderr())

    def stderr(self) -> str:
        self.err.flush()
        return Path(self.err.name).read_text()

    def server_pid(self) -> int:
        kids = [p for p in _children(self.proc.pid) if "nats-server" in _cmdline(p)]
        assert len(kids) == 1, kids
        return kids[0]

    def wait_for_line(self, fragment: str, timeout: float = 60.0, count: int = 1) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.stderr().count(fragment) >= count:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{fragment!r} x{count} never logged; exit={self.proc.poll()}\n{self.stderr()}")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _discard(stream: Any) -> None:
    for _ in stream:
        pass


def _agent(url: str, prefix: str, instance: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, WORKER, "--url", url, "--prefix", prefix, "--uri", URI, "--instance", instance],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    for line in proc.stderr:
        if '"ready"' in line:
            # Keep reading: an agent logs every action, and a full pipe (64 KiB, a few seconds of
            # logs) would block it mid-write, so that it could never see the kill.
            threading.Thread(target=_discard, args=(proc.stderr,), daemon=True).start()
            return proc
    raise AssertionError(f"agent {instance} never became ready (exit {proc.poll()})")


def _kill(url: str, prefix: str) -> dict[str, object]:
    out = subprocess.run(
        [MESH, "kill", URI, "--json", "--wait", "30", "--reason", "test"],
        capture_output=True, text=True, timeout=90,
        env={**os.environ, "NATS_URL": url, "MESH_PREFIX": prefix},
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    report: dict[str, object] = json.loads(out.stdout)
    return report


def _stop_group(up: Up, sig: signal.Signals = signal.SIGINT) -> int:
    os.killpg(up.proc.pid, sig)
    try:
        return up.proc.wait(30)
    finally:
        up.err.close()


def test_a_killed_server_is_restarted_and_a_kill_after_it_reaches_every_instance(tmp_path: Path) -> None:
    up = Up(tmp_path)
    agents = []
    try:
        agents = [_agent(up.url, "mesh", f"w{i}") for i in range(3)]
        first = up.server_pid()
        os.kill(first, signal.SIGKILL)
        up.wait_for_line("nats-server restarted")
        assert "killed by signal 9 (SIGKILL)" in up.stderr()
        second = up.server_pid()
        assert second != first
        assert not Path(f"/proc/{first}").exists()  # reaped: no zombie left
        report = _kill(up.url, "mesh")
        rows = report["instances"]
        assert isinstance(rows, list)
        assert sorted((row["instance"], row["status"]) for row in rows) == [
            ("w0", "killed"),
            ("w1", "killed"),
            ("w2", "killed"),
        ], report
        assert report["missing"] == []
        for agent in agents:
            assert agent.wait(30) == 0
        assert up.proc.poll() is None
    finally:
        for agent in agents:
            if agent.poll() is None:
                agent.kill()
                agent.wait(10)
        code = _stop_group(up)
    assert code == 0
    assert _children(up.proc.pid) == []


def test_a_server_that_keeps_dying_makes_mesh_up_give_up_and_exit_non_zero(tmp_path: Path) -> None:
    up = Up(tmp_path)
    try:
        for n in range(1, 6):
            os.kill(up.server_pid(), signal.SIGKILL)
            up.wait_for_line("nats-server restarted", count=n)
        os.kill(up.server_pid(), signal.SIGKILL)
        code = up.proc.wait(60)
    finally:
        if up.proc.poll() is None:
            os.killpg(up.proc.pid, signal.SIGKILL)
            up.proc.wait(10)
        up.err.close()
    assert code == 1
    err = Path(up.err.name).read_text()
    assert "nats-server died (killed by signal 9 (SIGKILL)) 6 times within 60s; giving up" in err
    assert "Traceback" not in err
    assert _children(up.proc.pid) == []


@pytest.mark.parametrize("moment", ["agents-live", "right-after-kill", "agents-exited", "server-gone"])
def test_sigint_to_the_process_group_ends_mesh_up_with_nothing_left(tmp_path: Path, moment: str) -> None:
    up = Up(tmp_path)
    agents = [_agent(up.url, "mesh", f"w{i}") for i in range(3)]
    try:
        if moment != "agents-live":
            _kill(up.url, "mesh")
        if moment in ("agents-exited", "server-gone"):
            for agent in agents:
                agent.wait(30)
        if moment == "server-gone":
            os.kill(up.server_pid(), signal.SIGTERM)
            time.sleep(0.05)  # sleep-ok: aims the group signal at the server's shutdown, not a wait
    finally:
        code = _stop_group(up)
        for agent in agents:
            if agent.poll() is None:
                agent.kill()
                agent.wait(10)
    assert code == 0, Path(up.err.name).read_text()
    assert "did not stop" not in Path(up.err.name).read_text()
    assert _children(up.proc.pid) == []


def test_sigterm_to_mesh_up_alone_stops_its_server_too(tmp_path: Path) -> None:
    up = Up(tmp_path)
    server = up.server_pid()
    up.proc.send_signal(signal.SIGTERM)
    try:
        code = up.proc.wait(30)
    finally:
        up.err.close()
    assert code == 0
    assert not Path(f"/proc/{server}").exists()

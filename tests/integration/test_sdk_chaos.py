"""Failures: kill during a server outage, fail-closed, escalation of a stuck process, 3 processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent_sdk import TERMINATED_EXIT_CODE, AgentKilled
from mesh.runtime.settings import Settings
from mesh.transport.server import EmbeddedServer
from tests.integration.sdk_helpers import AgentPool, Ops, wait_until
from tests.tcpproxy import TcpProxy

pytestmark = pytest.mark.chaos

URI = "agent://acme/prod/mailer"
WORKER = Path(__file__).parent / "agents" / "worker.py"
ROOT = Path(__file__).resolve().parents[2]


def _act_until_killed(agent: Any, act: Any, stop: threading.Event) -> threading.Thread:
    """A thread that acts and sleeps at a safe point until ``stop`` or the kill (AgentKilled)."""

    def loop() -> None:
        try:
            while not stop.is_set():
                act()
                agent.sleep(0.005)
        except AgentKilled:
            pass

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def own_settings(own_server: EmbeddedServer, prefix: str) -> Settings:
    return Settings(nats_url=own_server.url, prefix=prefix, actor="tester", connect_timeout=3.0)


@pytest.fixture
def ops(settings: Settings) -> Iterator[Ops]:
    o = Ops(settings)
    yield o
    o.close()


def test_kill_written_while_disconnected_is_honoured_first(
    own_server: EmbeddedServer, own_settings: Settings
) -> None:
    """The server restarts while the agent is away; the kill is written before the agent can get
    back (its only way in, a proxy, refuses it until then), and no guarded action runs after it
    reconnects."""
    proxy = TcpProxy(own_server.port)
    via = Settings(nats_url=proxy.url, prefix=own_settings.prefix, actor="tester", connect_timeout=3.0)
    pool = AgentPool(via)
    try:
        agent = pool.start(URI, instance="d1")
        core = agent._core
        actions: list[tuple[int, bool]] = []  # (reconnect epoch, connected) at each guarded action
        epoch = [0]
        stop = threading.Event()

        @agent.guard
        def act() -> None:
            actions.append((epoch[0], core.conn.is_connected))

        thread = _act_until_killed(agent, act, stop)
        wait_until(lambda: len(actions) > 3, what="the agent to act")

        proxy.cut()
        own_server.stop()
        wait_until(lambda: not core.conn.is_connected, what="agent sees the outage")
        own_server.start()
        epoch[0] = 1
        ops = Ops(own_settings)  # the operator reaches the restarted server directly
        try:
            _, _, record = ops.kill(URI, reason="written during outage")
            assert not core.conn.is_connected, "the kill must be written while the agent is away"
            proxy.restore()
            thread.join(30)
            assert not thread.is_alive() and agent.killed
            wait_until(lambda: ops.acks(record.command_id), what="ack after reconnect")
        finally:
            ops.close()
        assert [a for a in actions if a[0] == 1 and a[1]] == []  # nothing ran between reconnect and kill
    finally:
        stop.set()
        pool.close()
        proxy.close()


def test_fail_closed_halts_without_nats_and_clears_on_reconnect(
    own_server: EmbeddedServer, own_settings: Settings
) -> None:
    pool = AgentPool(own_settings)
    try:
        agent = pool.start(URI, instance="f1", fail_closed_after=0.5)
        agent.heartbeat()
        own_server.stop()
        wait_until(lambda: agent.killed, what="fail-closed halt")
        with pytest.raises(AgentKilled) as info:
            agent.heartbeat()
        assert info.value.record is None and "fail_closed_after" in str(info.value)
        own_server.start()
        assert agent.wait_resumed(timeout=30)
        agent.heartbeat()
    finally:
        pool.close()


def _spawn(settings: Settings, instance: str, log: Path, mode: str = "loop") -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, str(WORKER), "--url", settings.nats_url, "--prefix", settings.prefix]
    cmd += ["--uri", URI, "--instance", instance, "--mode", mode]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log.open("wb"), env=env, cwd=ROOT)


def _lines(log: Path) -> list[dict[str, Any]]:
    out = []
    for line in log.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


@pytest.mark.parametrize("mode", ["stuck", "stuck-async"])
def test_escalation_terminates_a_stuck_process(
    ops: Ops, settings: Settings, tmp_path: Path, mode: str
) -> None:
    log = tmp_path / "stuck.log"
    proc = _spawn(settings, "stuck", log, mode=mode)
    try:
        wait_until(lambda: any(e.get("event") == "action" for e in _lines(log)), what="stuck agent ready")
        _, _, record = ops.kill(URI, grace=1.0, reason="stuck")
        assert proc.wait(60) == 86 == TERMINATED_EXIT_CODE  # the README's literal exit status
    finally:
        if proc.poll() is None:
            proc.kill()
    (terminated,) = ops.events("terminated", "stuck")
    assert terminated.command_id == record.command_id
    assert terminated.data["status"] == "terminated"
    assert ops.acks(record.command_id) == []


def test_three_processes_do_nothing_after_their_ack(ops: Ops, settings: Settings, tmp_path: Path) -> None:
    logs = [tmp_path / f"w{i}.log" for i in range(3)]
    procs = [_spawn(settings, f"w{i}", log) for i, log in enumerate(logs)]
    try:
        for log in logs:
            wait_until(
                lambda log=log: sum(e.get("event") == "action" for e in _lines(log)) > 5, what="worker busy"
            )
        _, _, record = ops.kill("agent://acme/*/*", reason="stop the fleet")
        for proc in procs:
            assert proc.wait(60) == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    acks = ops.acks(record.command_id)
    assert sorted(e.instance for e in acks) == ["w0", "w1", "w2"]  # type: ignore[type-var]
    for log, ack in zip(logs, sorted(acks, key=lambda e: e.instance or ""), strict=True):
        events = [e.get("event") for e in _lines(log)]
        assert "halt acknowledged" in events
        acked_at = events.index("halt acknowledged")
        assert "action" not in events[acked_at:]
        last = max(e["n"] for e in _lines(log) if e.get("event") == "action")
        assert ack.data["checkpoint"] == {"n": last + 1}


def test_no_guarded_action_runs_between_reconnect_and_the_reread_of_kills(
    own_server: EmbeddedServer, own_settings: Settings
) -> None:
    """nats-py counts itself connected a server round trip before it calls reconnected_cb; held open
    here for 2 s, that window must not let an action pass a kill written during the outage."""
    proxy = TcpProxy(own_server.port)
    via = Settings(nats_url=proxy.url, prefix=own_settings.prefix, actor="tester", connect_timeout=3.0)
    pool = AgentPool(via)
    ops = Ops(own_settings)  # the operator talks to the server directly
    try:
        agent = pool.start(URI, instance="w1")
        core = agent._core
        phase = ["before"]
        actions: list[str] = []
        stop = threading.Event()

        @agent.guard
        def act() -> None:
            actions.append(phase[0] if core.conn.is_connected else "away")

        thread = _act_until_killed(agent, act, stop)
        wait_until(lambda: len(actions) > 3)
        proxy.cut()
        wait_until(lambda: not core.conn.is_connected, what="agent sees the outage")
        _, _, record = ops.kill(URI, reason="written during outage")
        phase[0] = "after the kill"
        proxy.restore(hold=2.0)
        thread.join(30)
        assert not thread.is_alive() and agent.killed
        wait_until(lambda: ops.acks(record.command_id), what="ack after reconnect")
        assert "after the kill" not in actions, actions[-5:]
        assert "away" in actions  # the outage really let it act on until the reconnect
    finally:
        stop.set()
        ops.close()
        pool.close()
        proxy.close()

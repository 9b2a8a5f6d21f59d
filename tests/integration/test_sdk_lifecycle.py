"""Pause in place, raise then restart from the checkpoint, and the lifecycle events."""

from __future__ import annotations

import threading

import pytest

from agent_sdk import Agent, AgentKilled
from mesh.runtime.settings import Settings
from tests.integration.sdk_helpers import AgentPool, Ops, wait_until

URI = "agent://acme/prod/mailer"
UNITS = 150


def test_pause_then_resume_continues_in_place(ops: Ops, pool: AgentPool) -> None:
    agent = pool.start(URI, instance="p1", on_kill="pause")
    done: list[int] = []
    finished = threading.Event()

    @agent.guard
    def unit(n: int) -> None:
        done.append(n)

    def loop() -> None:
        state = agent.restore() or {"n": 0}
        for n in range(state["n"], UNITS):
            agent.heartbeat(metadata={"n": n})
            unit(n)
            agent.checkpoint({"n": n + 1})
            agent.sleep(0.002)
        finished.set()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    wait_until(lambda: len(done) >= 20)
    key, _, record = ops.kill(URI, reason="pause me")
    (ack,) = wait_until(lambda: ops.acks(record.command_id))
    at_ack = len(done)
    assert ack.data["status"] == "paused"
    # The acknowledged checkpoint is exactly the work done: nothing ran after the ack.
    assert ack.data["checkpoint"] == {"n": at_ack}
    assert ack.data["metadata"]["n"] in (at_ack - 1, at_ack)
    wait_until(lambda: agent.status.value == "paused")
    assert len(done) == at_ack and not finished.is_set()

    ops.resume(key)
    assert finished.wait(60)
    thread.join(10)
    assert done == list(range(UNITS))  # no duplicate, no skipped unit
    (resumed,) = wait_until(lambda: ops.events("resumed"))
    assert resumed.instance == "p1"


def test_raise_then_restart_restores_checkpoint(ops: Ops, settings: Settings) -> None:
    done: list[int] = []

    def run() -> None:
        with Agent(
            URI, instance="stable", settings=settings, hard_kill=False, heartbeat_interval=0.5
        ) as agent:

            @agent.guard
            def unit(n: int) -> None:
                done.append(n)

            state = agent.restore() or {"n": 0}
            for n in range(state["n"], UNITS):
                agent.heartbeat(metadata={"n": n})
                unit(n)
                agent.checkpoint({"n": n + 1})
                agent.sleep(0.002)

    errors: list[BaseException] = []

    def first() -> None:
        try:
            run()
        except AgentKilled as exc:
            errors.append(exc)

    thread = threading.Thread(target=first, daemon=True)
    thread.start()
    wait_until(lambda: len(done) >= 20)
    key, _, record = ops.kill("agent://acme/prod/*")
    thread.join(30)
    assert errors and errors[0].record == record
    (ack,) = ops.acks(record.command_id)
    # Halted in sleep (metadata of the last unit) or at the next heartbeat (already the next).
    assert ack.data["metadata"] in ({"n": len(done) - 1}, {"n": len(done)})
    assert ack.data["checkpoint"] == {"n": len(done)} and ack.data["checkpoint_seq"] == len(done)
    assert ack.data["status"] == "killed" and ack.data["kill_key"] == key
    (stopped,) = ops.events("stopped", "stable")
    assert stopped.data["status"] == "killed"

    ops.resume(key)
    run()  # a new process with the same instance id picks up where the first stopped
    assert done == list(range(UNITS))
    assert [e.data["status"] for e in ops.events("stopped", "stable")] == ["killed", "stopped"]


def test_crash_is_reported_with_the_exception_type(ops: Ops, settings: Settings) -> None:
    def crash() -> None:
        with Agent(URI, instance="c1", settings=settings, hard_kill=False) as agent:
            agent.heartbeat()
            raise ZeroDivisionError("boom")

    with pytest.raises(ZeroDivisionError):
        crash()
    (crashed,) = ops.events("crashed", "c1")
    assert crashed.data["exception"] == "ZeroDivisionError"
    assert [e.type.value for e in ops.events(instance="c1")] == ["started", "crashed"]

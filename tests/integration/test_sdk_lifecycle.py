"""Pause in place, raise then restart from the checkpoint, and the lifecycle events."""

from __future__ import annotations

import contextlib
import threading
from dataclasses import replace

import pytest

from agent_sdk import Agent, AgentKilled, AsyncAgent
from mesh.protocol.codec import decode
from mesh.protocol.models import AuditEvent, Checkpoint
from mesh.protocol.target import parse_agent_uri
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection
from mesh.transport.provision import provision
from tests.integration.sdk_helpers import (
    AgentPool,
    Ops,
    audit_events,
    await_until,
    delete_kill,
    put_kill,
    wait_until,
)

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


async def test_an_ack_never_carries_a_checkpoint_a_restart_would_not_restore(settings: Settings) -> None:
    """The 3-node campaign (seed 2): after a restart, instances restored an older checkpoint than
    their ``halted`` ack carried. The checkpoint put was refused while its bucket's stream had no
    leader (a 503 during an election) and the ack, pipelined behind it, was stored anyway. Here the
    bucket's stream stops answering for the instance's key, as it does without a leader."""
    async with Connection(settings, name="test-ckpt-ack") as conn:
        await provision(conn.js, conn.ns)
        bucket = conn.ns.checkpoints_bucket
        kv = await conn.js.key_value(bucket)
        key = conn.ns.instance_key(parse_agent_uri(URI), "e1")

        async def stored() -> Checkpoint | None:
            with contextlib.suppress(Exception):  # not written yet
                return decode(Checkpoint, (await kv.get(key)).value or b"")
            return None

        async def acks(command_id: str) -> list[AuditEvent]:
            return [e for e in await audit_events(conn, "halted") if e.command_id == command_id]

        async def sleep_until_killed(agent: AsyncAgent) -> None:
            while True:
                await agent.sleep(0.05)

        async def first_checkpoint_stored() -> bool:
            saved = await stored()
            return saved is not None and saved.seq == 1

        agent = await AsyncAgent(URI, instance="e1", settings=settings, hard_kill=False).start()
        info = await conn.js.stream_info(f"KV_{bucket}")
        try:
            await agent.checkpoint({"n": 1})
            await await_until(first_checkpoint_stored, what="checkpoint n=1 stored")
            await conn.js.update_stream(replace(info.config, subjects=[f"$KV.{bucket}.elsewhere"]))
            await agent.checkpoint({"n": 2})  # refused: no stream answers for the key now
            control_key, _, record = await put_kill(conn, URI, "e1")
            with pytest.raises(AgentKilled):
                await sleep_until_killed(agent)
            (ack,) = await await_until(lambda: acks(record.command_id), what="the halted ack")
        finally:
            await agent.stop()  # its last flush is refused too: as a process gone before the retry
            await conn.js.update_stream(info.config)  # the election is over
        await delete_kill(conn, control_key)

        again = await AsyncAgent(URI, instance="e1", settings=settings, hard_kill=False).start()
        try:
            restored = again.restore()
        finally:
            await again.stop()
        assert restored == {"n": 1}  # n=2 was never stored
        # The ack carries the newest checkpoint that was stored, not the one refused.
        assert ack.data["checkpoint"] == restored and ack.data["checkpoint_seq"] == 1

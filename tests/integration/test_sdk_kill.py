"""Kill semantics against a real server: targets, acks, resume, kill before start, bad pushes."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from agent_sdk import AgentKilled, AgentKilledException
from mesh.runtime.settings import Settings
from tests.integration.sdk_helpers import AgentPool, Ops, resync, wait_until

URI = "agent://acme/prod/mailer"


@pytest.mark.parametrize(
    ("target", "instance", "bystander"),
    [
        (URI, None, ("agent://acme/prod/crawler", "i1")),
        ("agent://*/prod/mailer", None, ("agent://acme/dev/mailer", "i1")),
        ("agent://acme/*/mailer", None, ("agent://other/prod/mailer", "i1")),
        ("agent://acme/prod/*", None, ("agent://acme/dev/mailer", "i1")),
        ("agent://acme/*/*", None, ("agent://other/prod/mailer", "i1")),
        ("agent://*/*/*", None, None),
        (URI, "i1", (URI, "i2")),
    ],
)
def test_kill_reaches_matching_instances_only(
    ops: Ops, pool: AgentPool, target: str, instance: str | None, bystander: tuple[str, str] | None
) -> None:
    victim = pool.start(URI, instance="i1")
    other = pool.start(bystander[0], instance=bystander[1]) if bystander else None
    victim.heartbeat(metadata={"batch": 7})
    victim.checkpoint({"batch": 8})

    key, revision, record = ops.kill(target, instance, reason="runaway")
    wait_until(lambda: victim.killed, what="victim killed")
    with pytest.raises(AgentKilled) as info:
        victim.heartbeat()
    assert info.value.record == record
    assert victim.kill_record == record

    (ack,) = wait_until(lambda: ops.acks(record.command_id), what="halted ack")
    assert ack.agent_uri == URI and ack.instance == "i1"
    assert ack.revision == revision and ack.reason == "runaway" and ack.actor == "tester"
    assert ack.data["status"] == "killed" and ack.data["kill_key"] == key
    assert ack.data["metadata"] == {"batch": 7} and ack.data["checkpoint"] == {"batch": 8}
    if other is not None:
        resync(other)
        assert not other.killed
        other.heartbeat()


def test_alias_and_record_action_override(ops: Ops, pool: AgentPool) -> None:
    assert AgentKilledException is AgentKilled
    agent = pool.start(URI, instance="i1", on_kill="pause")
    _, _, record = ops.kill(URI, action="raise")
    wait_until(lambda: agent.killed)
    with pytest.raises(AgentKilledException):
        agent.checkpoint({"n": 1})
    (ack,) = wait_until(lambda: ops.acks(record.command_id))
    assert ack.data["status"] == "killed" and ack.data["checkpoint"] == {"n": 1}


def test_kill_before_start_never_runs_a_guarded_action(ops: Ops, pool: AgentPool) -> None:
    _, _, record = ops.kill("agent://acme/*/*", reason="before start")
    ran: list[int] = []
    agent = pool.start(URI, instance="late")
    assert agent.killed  # read before start() returned, so before `started`

    @agent.guard
    def act() -> None:
        ran.append(1)

    with pytest.raises(AgentKilled):
        act()
    assert ran == []
    (ack,) = wait_until(lambda: ops.acks(record.command_id))
    assert ack.instance == "late"
    (started,) = ops.events("started", "late")
    assert started.data["kill_keys"] == ["acme._._"]


def _worker(agent: Any, done: list[int], stop: threading.Event) -> None:
    @agent.guard
    def act(n: int) -> None:
        done.append(n)

    n = 0
    while not stop.is_set():
        agent.heartbeat(metadata={"n": n})
        act(n)
        n += 1
        agent.checkpoint({"n": n})
        agent.sleep(0.005)


def test_resume_clears_only_its_record(ops: Ops, pool: AgentPool) -> None:
    agent = pool.start(URI, instance="i1", on_kill="pause")
    done: list[int] = []
    stop = threading.Event()
    thread = threading.Thread(target=_worker, args=(agent, done, stop), daemon=True)
    thread.start()
    wait_until(lambda: len(done) > 3)

    key_a, _, rec_a = ops.kill(URI, reason="a")
    wait_until(lambda: ops.acks(rec_a.command_id))
    at_first_ack = len(done)
    # A second record while already paused is acknowledged at once (the operator waits for it).
    key_b, _, rec_b = ops.kill("agent://acme/*/*", reason="b")
    (ack_b,) = wait_until(lambda: ops.acks(rec_b.command_id))
    assert ack_b.data["status"] == "paused"

    ops.resume(key_a)
    wait_until(lambda: agent.kill_record == rec_b, what="only record b left")
    resync(agent)
    assert agent.killed and len(done) == at_first_ack
    assert ops.events("resumed") == []

    ops.resume(key_b)
    assert agent.wait_resumed(timeout=30)
    wait_until(lambda: len(done) > at_first_ack + 3, what="work continues")
    stop.set()
    thread.join(10)
    assert done == list(range(len(done)))
    wait_until(lambda: ops.events("resumed"))


def test_malformed_control_messages_are_ignored(ops: Ops, pool: AgentPool, settings: Settings) -> None:
    agent = pool.start(URI, instance="i1")
    ns = settings.namespace
    subject = ns.control_subject("acme.prod.mailer")
    ops.publish(subject, b"not json")
    ops.publish(subject, b"{}", {"Nats-Sequence": "5"})
    ops.publish(subject, b"\xff\xfe garbage", {"Nats-Sequence": "x"})
    ops.publish(subject, b'{"target": 12}', {"Nats-Sequence": "7"})
    wait_until(lambda: agent._core.malformed >= 4, what="malformed counted")
    assert agent._core.malformed == 4  # each counted once
    assert not agent.killed
    agent.heartbeat()

    _, _, record = ops.kill(URI)
    wait_until(lambda: agent.killed)
    with pytest.raises(AgentKilled):
        agent.heartbeat()
    wait_until(lambda: ops.acks(record.command_id))


def test_checkpoint_refuses_bad_state(pool: AgentPool) -> None:
    from mesh.errors import InvalidCheckpoint

    agent = pool.start(URI, instance="i1")
    with pytest.raises(InvalidCheckpoint):
        agent.checkpoint({"x": object()})
    with pytest.raises(InvalidCheckpoint):
        agent.checkpoint("x" * (600 * 1024))
    agent.checkpoint({"ok": True})


def test_forged_clear_push_neither_resumes_nor_masks_later_kills(
    ops: Ops, pool: AgentPool, settings: Settings
) -> None:
    agent = pool.start(URI, instance="i1", on_kill="pause")
    key, revision, first = ops.kill(URI, reason="real kill")
    wait_until(lambda: agent.killed)
    subject = settings.namespace.control_subject(key)
    # What a forger (or a corrupt republish) could send: a "cleared" push from the far future.
    ops.publish(subject, b"", {"Nats-Sequence": str(revision + 10_000), "KV-Operation": "DEL"})
    resync(agent)
    assert agent.killed and agent.kill_record == first

    # A forged kill with a huge revision must not mask the real resume and the next real kill.
    ops.publish(subject, b'{"target": "agent://acme/prod/mailer"}', {"Nats-Sequence": str(revision + 20_000)})
    wait_until(lambda: agent.kill_record is not None and agent.kill_record.command_id != first.command_id)
    ops.resume(key)
    resync(agent)
    resync(agent)  # the KV wins once its reads keep disagreeing with the pushed revision
    assert agent.wait_resumed(timeout=30)
    _, _, second = ops.kill(URI, reason="second real kill")
    wait_until(lambda: agent.kill_record == second, what="the next real kill applies")

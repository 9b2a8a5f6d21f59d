"""Policies against a real server: usage breaches kill exactly the breaching agent; counters persist."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import nats.js.errors
import pytest

from agent_sdk import AgentKilled, AsyncAgent
from controller.runner import Controller
from mesh.client.operator import AsyncMesh
from mesh.errors import ConfigError
from mesh.protocol.codec import decode
from mesh.protocol.models import Checkpoint, KillRecord, Status
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection
from mesh.transport.kvscan import put_key
from tests.integration.controller_helpers import (
    audit_events,
    eventually,
    fast_options,
    running_controller,
    status_of,
    written_after,
)

pytestmark = pytest.mark.timeout(90)


MAILER = "agent://acme/prod/mailer"
OTHER = "agent://acme/prod/other"


class Runner:
    """A real AsyncAgent passing a safe point every 20 ms until killed."""

    def __init__(self, settings: Settings, uri: str, instance: str) -> None:
        self.agent = AsyncAgent(
            uri, instance=instance, settings=settings, hard_kill=False, heartbeat_interval=0.2
        )
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> Runner:
        await self.agent.start()
        self.task = asyncio.create_task(self._loop())
        return self

    async def _loop(self) -> None:
        while True:
            await self.agent.heartbeat()
            await self.agent.sleep(0.02)

    @property
    def killed(self) -> bool:
        t = self.task
        return t is not None and t.done() and isinstance(t.exception(), AgentKilled)

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(BaseException):
                await self.task
        with contextlib.suppress(Exception):
            await self.agent.stop()


@pytest.fixture
async def ctl(conn: Connection, settings: Settings) -> AsyncIterator[Controller]:
    async with running_controller(settings, fast_options(policy_reload_every=0.2)) as c:
        yield c


@pytest.fixture
async def mesh(conn: Connection, settings: Settings) -> AsyncIterator[AsyncMesh]:
    async with AsyncMesh(settings) as m:
        yield m


async def start(settings: Settings, *specs: tuple[str, str]) -> list[Runner]:
    return [await Runner(settings, uri, inst).start() for uri, inst in specs]


async def control_record(conn: Connection, key: str) -> KillRecord | None:
    """The record under ``key``, or None if there is none; any other failure of the read fails."""
    kv = await conn.js.key_value(conn.ns.control_bucket)
    try:
        entry = await kv.get(key)
    except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
        return None
    return decode(KillRecord, entry.value) if entry.value else None


async def policies_loaded(ctl: Controller, n: int) -> None:
    async def check() -> bool:
        return ctl.stats.policies == n

    await eventually(check, what=f"{n} policies loaded")


async def test_rate_breach_kills_every_instance_of_that_agent_only(
    conn: Connection, ctl: Controller, mesh: AsyncMesh, settings: Settings
) -> None:
    await mesh.set_policy("mail-rate", "agent://acme/prod/*", ["emails<=100/1m"])
    await policies_loaded(ctl, 1)
    runners = await start(settings, (MAILER, "a1"), (MAILER, "a2"), (OTHER, "o1"))
    try:
        a1, a2, o1 = runners
        o1.agent.record(emails=90)
        a1.agent.record(emails=60)
        a2.agent.record(emails=30)
        a2.agent.record(emails=30)
        await eventually(lambda: _true(a1.killed and a2.killed), what="both mailer instances killed")
        rec = await control_record(conn, "acme.prod.mailer")
        assert rec is not None and rec.actor == "policy:mail-rate" and rec.action == "raise"
        assert rec.target == MAILER and rec.reason is not None
        assert "emails<=100/1m" in rec.reason and "observed 120" in rec.reason
        assert await control_record(conn, "acme.prod._") is None  # never the policy's pattern
        assert o1.running and not o1.agent.killed
        violations = await audit_events(conn.js, conn.ns, "policy_violation")
        assert [(v.agent_uri, v.actor, v.data["limit"]) for v in violations] == [
            (MAILER, "policy:mail-rate", "emails<=100/1m")
        ]
        kills = await audit_events(conn.js, conn.ns, "kill")
        assert [k.command_id for k in kills] == [rec.command_id]
    finally:
        for r in runners:
            await r.stop()


async def _true(value: bool) -> bool:
    return value


async def _usage_is(conn: Connection, key: str, cost: float) -> bool:
    rec = await status_of(conn.js, conn.ns, key)
    return rec is not None and rec.usage.get("cost_usd") == cost


async def test_total_breach_pauses_and_removing_the_policy_does_not_resume(
    conn: Connection, ctl: Controller, mesh: AsyncMesh, settings: Settings
) -> None:
    await mesh.set_policy("budget", MAILER, ["cost_usd<=1"], action="pause", grace=30)
    await policies_loaded(ctl, 1)
    runners = await start(settings, (MAILER, "b1"), (MAILER, "b2"), (OTHER, "o1"))
    try:
        b1, b2, o1 = runners
        b1.agent.record(cost_usd=0.6)
        o1.agent.record(cost_usd=5.0)  # another agent's spending is not the mailer's
        # The controller has these totals (they are in its status records) and has evaluated
        # the policy on a later heartbeat: no kill yet, 0.6 is within the limit.
        for key, cost in (("acme.prod.mailer.b1", 0.6), ("acme.prod.other.o1", 5.0)):
            await eventually(lambda k=key, c=cost: _usage_is(conn, k, c), what=f"{key}'s usage stored")
            await written_after(conn.js, conn.ns, key, datetime.now(UTC))
        assert not b1.agent.killed and await control_record(conn, "acme.prod.mailer") is None
        b2.agent.record(cost_usd=0.6)
        await eventually(
            lambda: _true(b1.agent.status is Status.PAUSED and b2.agent.status is Status.PAUSED),
            what="both instances paused",
        )
        rec = await control_record(conn, "acme.prod.mailer")
        assert rec is not None and rec.action == "pause" and rec.grace == 30
        assert rec.reason is not None and "cost_usd<=1" in rec.reason and "observed 1.2" in rec.reason
        assert o1.running and not o1.agent.killed

        await mesh.remove_policy("budget")
        await policies_loaded(ctl, 0)
        assert await mesh.list_policies() == []
        # The removal had its chance to act: the controller has processed heartbeats of both
        # since it dropped the policy, and they are still paused under the record.
        mark = datetime.now(UTC)
        for key in ("acme.prod.mailer.b1", "acme.prod.mailer.b2"):
            rec = await written_after(conn.js, conn.ns, key, mark)
            assert rec.status is Status.PAUSED
        assert b1.agent.killed and b2.agent.killed  # a human resumes, not the removal
        assert await control_record(conn, "acme.prod.mailer") is not None

        await mesh.resume(MAILER, reason="budget raised", wait=5)
        await eventually(
            lambda: _true(b1.agent.status is Status.ACTIVE and b2.agent.status is Status.ACTIVE),
            what="both instances resumed",
        )
        assert b1.running and b2.running
    finally:
        for r in runners:
            await r.stop()


async def test_a_policy_on_a_pattern_covers_agents_created_after_it(
    conn: Connection, ctl: Controller, mesh: AsyncMesh, settings: Settings
) -> None:
    await put_key(conn, conn.ns.policies_bucket, "garbage", b"{not json")
    await mesh.set_policy("runaway", "agent://acme/*/*", ["tasks<=5"])
    await policies_loaded(ctl, 1)
    assert ctl.stats.bad_policies == 1  # counted and logged; the good one still applies
    runners = await start(settings, ("agent://acme/dev/newbie", "n1"), ("agent://other/dev/newbie", "x1"))
    try:
        newbie, outsider = runners
        outsider.agent.record(tasks=50)
        for _ in range(6):
            newbie.agent.record(tasks=1)
        await eventually(lambda: _true(newbie.killed), what="the new agent killed")
        record = newbie.agent.kill_record
        assert record is not None and record.actor == "policy:runaway"
        assert outsider.running
    finally:
        for r in runners:
            await r.stop()


async def test_counters_survive_a_restart_with_the_same_instance_id(
    conn: Connection, settings: Settings
) -> None:
    first = AsyncAgent(MAILER, instance="r1", settings=settings, hard_kill=False, heartbeat_interval=0.2)
    await first.start()
    first.record(emails=7, cost_usd=0.25)
    first.record(emails=3)
    kv = await conn.js.key_value(conn.ns.checkpoints_bucket)

    async def stored() -> Checkpoint | None:
        with contextlib.suppress(Exception):
            saved = decode(Checkpoint, (await kv.get("acme.prod.mailer.r1")).value or b"")
            if saved.usage == {"emails": 10.0, "cost_usd": 0.25}:
                return saved
        return None

    saved = await eventually(stored, what="usage flushed in the background, with no checkpoint call")
    assert saved.state is None
    first.record(emails=5)
    await first.stop()  # flushed before exit

    second = AsyncAgent(MAILER, instance="r1", settings=settings, hard_kill=False, heartbeat_interval=0.2)
    await second.start()
    try:
        assert second.usage == {"emails": 15.0, "cost_usd": 0.25}
        assert second.restore() is None  # usage alone is not a checkpoint
        await second.checkpoint({"step": 1})
        second.record(emails=1)
    finally:
        await second.stop()
    third = AsyncAgent(MAILER, instance="r1", settings=settings, hard_kill=False, heartbeat_interval=0.2)
    await third.start()
    try:
        assert third.usage == {"emails": 16.0, "cost_usd": 0.25}
        assert third.restore() == {"step": 1}
    finally:
        await third.stop()


async def test_usage_totals_match_what_the_agents_recorded(
    conn: Connection, ctl: Controller, mesh: AsyncMesh, settings: Settings
) -> None:
    runners = await start(settings, (MAILER, "u1"), (MAILER, "u2"), (OTHER, "u3"))
    try:
        expected = {"u1": 0.0, "u2": 0.0, "u3": 0.0}
        for i in range(40):
            r = runners[i % 3]
            r.agent.record(emails=i, tokens=1.5)
            expected[r.agent.instance] += i

        async def matches() -> bool:
            report = await mesh.usage("agent://acme/prod/*")
            got = {a.agent_uri: a.totals for a in report.agents}
            return got == {
                MAILER: {"emails": expected["u1"] + expected["u2"], "tokens": 1.5 * 27},
                OTHER: {"emails": expected["u3"], "tokens": 1.5 * 13},
            }

        await eventually(matches, what="usage totals as recorded")
        report = await mesh.usage(MAILER, since="1h")
        (agent,) = report.agents
        assert {i.instance: i.totals["emails"] for i in agent.instances} == {
            "u1": expected["u1"],
            "u2": expected["u2"],
        }
        assert all(i.per_hour["emails"] > 0 for i in agent.instances)
        rec = await status_of(conn.js, conn.ns, "acme.prod.mailer.u1")
        assert rec is not None and rec.usage["emails"] == expected["u1"]
    finally:
        for r in runners:
            await r.stop()


def test_record_refuses_bad_values(settings: Settings) -> None:
    agent = AsyncAgent(MAILER, instance="v1", settings=settings)
    agent.record(emails=1, cost_usd=0.5)
    for bad in ({"emails": -1}, {"emails": "10"}, {"emails": True}, {"emails": float("nan")}, {"runtime": 1}):
        with pytest.raises(ConfigError) as info:
            agent.record(**bad)
        assert isinstance(info.value, ValueError)
    assert agent.usage == {"emails": 1.0, "cost_usd": 0.5}

"""The README's special limits through a running controller: ``instances<=N``, ``runtime<=DURATION``
and ``silence<=DURATION`` kill the agent that breaks them (and only it), from live heartbeats."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from controller.runner import Controller
from mesh.client.operator import AsyncMesh
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection
from tests.integration.controller_helpers import Pacer, audit_events, fast_options, running_controller
from tests.integration.test_policies import Runner
from tests.waiting import await_until

pytestmark = pytest.mark.timeout(90)

MAILER = "agent://acme/prod/mailer"
OTHER = "agent://acme/prod/other"


@pytest.fixture
async def ctl(conn: Connection, settings: Settings) -> AsyncIterator[Controller]:
    options = fast_options(policy_reload_every=0.2, policy_tick_every=0.2, lost_after=30.0)
    async with running_controller(settings, options) as c:
        yield c


async def _policy(settings: Settings, ctl: Controller, name: str, limit: str) -> None:
    async with AsyncMesh(settings) as op:
        await op.set_policy(name, "agent://acme/prod/*", [limit])
    await await_until(lambda: ctl.stats.policies == 1, what=f"policy {name} loaded")


async def _violation_recorded(conn: Connection, limit: str) -> None:
    """Exactly one ``policy_violation`` of ``limit`` for the mailer is (or soon is) in the audit log.

    The policy writes the kill record before it audits it, so the agent may halt first.
    """

    async def recorded() -> bool:
        return await _violation(conn, limit) == [(MAILER, limit)]

    await await_until(recorded, what=f"the audited violation of {limit}")


async def _violation(conn: Connection, limit: str) -> list[object]:
    events = await audit_events(conn.js, conn.ns, "policy_violation")
    return [(e.agent_uri, e.data["limit"]) for e in events if e.data.get("limit") == limit]


async def test_instances_limit_kills_the_agent_with_one_too_many(
    conn: Connection, settings: Settings, ctl: Controller
) -> None:
    await _policy(settings, ctl, "two-max", "instances<=2")
    runners = [await Runner(settings, MAILER, f"m{i}").start() for i in range(2)]
    runners.append(await Runner(settings, OTHER, "o1").start())
    try:
        await await_until(lambda: ctl.fleet.entries.get("acme.prod.mailer.m1"), what="m1 seen")
        runners.append(await Runner(settings, MAILER, "m2").start())
        await await_until(lambda: all(r.killed for r in runners[:2] + runners[3:]), what="the mailers killed")
        record = runners[0].agent.kill_record
        assert record is not None and record.actor == "policy:two-max" and record.target == MAILER
        assert record.reason is not None and "instances<=2" in record.reason and "observed 3" in record.reason
        assert runners[2].running and not runners[2].agent.killed  # the other agent has one
        await _violation_recorded(conn, "instances<=2")
    finally:
        for r in runners:
            await r.stop()


async def test_runtime_limit_kills_an_instance_running_too_long(
    conn: Connection, settings: Settings, ctl: Controller
) -> None:
    await _policy(settings, ctl, "short-lived", "runtime<=1s")
    runner = await Runner(settings, MAILER, "r1").start()
    try:
        await await_until(lambda: runner.killed, what="the policy to end a run longer than 1 s")
        record = runner.agent.kill_record
        assert record is not None and record.actor == "policy:short-lived"
        assert record.reason is not None and "runtime<=1s" in record.reason
        await _violation_recorded(conn, "runtime<=1s")
    finally:
        await runner.stop()


async def test_silence_limit_kills_the_agent_when_one_instance_falls_silent(
    conn: Connection, settings: Settings, ctl: Controller
) -> None:
    await _policy(settings, ctl, "no-silence", "silence<=1s")
    runner = await Runner(settings, MAILER, "live").start()
    mute = Pacer(conn.nc, conn.ns, MAILER, "mute", every=0.1).start()
    try:
        await await_until(lambda: ctl.fleet.entries.get("acme.prod.mailer.mute"), what="mute seen")
        assert not runner.killed
        await mute.stop()
        await await_until(lambda: runner.killed, what="the policy to act on the silent instance")
        record = runner.agent.kill_record
        assert record is not None and record.actor == "policy:no-silence" and record.target == MAILER
        assert record.reason is not None and "silence<=1s" in record.reason
        await _violation_recorded(conn, "silence<=1s")
    finally:
        await mute.stop()
        await runner.stop()

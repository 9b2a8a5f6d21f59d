"""Budget policies: without a controller, alert and dry run, pause and resume, usage."""

from __future__ import annotations

import asyncio

import pytest

from controller.runner import Controller
from mesh.client.operator import AsyncMesh
from mesh.errors import ConfigError, MeshTimeout
from mesh.protocol.models import AuditEvent, Status
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection

# The module's own server, its controller and operator (fixtures, used by their names).
from tests.integration.budget_fixtures import budget_controller, budget_mesh, budget_server  # noqa: F401
from tests.integration.budget_helpers import (
    MAILER,
    _true,
    async_agent,
    limit_of,
    policies_loaded,
)
from tests.integration.controller_helpers import (
    audit_events,
    eventually,
    fast_options,
    running_controller,
)

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("on_unreachable", ["wait", "proceed"])
async def test_without_a_controller_an_instance_spends_its_lease_then_waits_or_goes_on(
    conn: Connection, mesh: AsyncMesh, settings: Settings, on_unreachable: str
) -> None:
    async with running_controller(settings, fast_options(policy_reload_every=0.2)) as ctl:
        await mesh.set_policy("cap", MAILER, ["emails<=1000"], on_unreachable=on_unreachable)  # type: ignore[arg-type]
        await policies_loaded(ctl, 1)
        agent = await async_agent(settings, "f1", quota_timeout=1.0)
        await agent.spend(emails=1)
    try:
        wallet = agent._core.quota.wallet
        held = wallet.left("emails")
        assert held == 499  # half of the budget for the only instance, one unit spent
        for _ in range(int(held)):
            await agent.spend(emails=1)  # no controller needed while the lease holds
        if on_unreachable == "wait":
            with pytest.raises(MeshTimeout):
                await agent.spend(emails=1)
            assert agent.usage["emails"] == 500 and not agent.killed
        else:
            for _ in range(20):
                await agent.spend(emails=1)
            assert agent.usage["emails"] == 520 and wallet.unchecked == {"emails": 20}
    finally:
        await agent.stop()


async def test_alert_and_dry_run_report_a_breach_and_stop_nothing(
    conn: Connection, ctl: Controller, mesh: AsyncMesh, settings: Settings
) -> None:
    await mesh.set_policy("watch", MAILER, ["emails<=10"], action="alert")
    await mesh.set_policy("trial", MAILER, ["emails<=5/1h"], dry_run=True)
    await policies_loaded(ctl, 2)
    agent = await async_agent(settings, "a1")
    try:
        for _ in range(15):
            await agent.spend(emails=1)
        agent.record(emails=10)  # a breach seen in heartbeats is reported the same way
        assert agent.usage["emails"] == 25 and not agent.killed

        async def reported() -> list[AuditEvent]:
            events = await audit_events(conn.js, conn.ns, "policy_violation")
            return events if {e.data["policy"] for e in events} == {"watch", "trial"} else []

        events = await eventually(reported, what="both breaches reported")
        by_policy = {e.data["policy"]: e for e in events}
        assert by_policy["watch"].data["action"] == "alert" and not by_policy["watch"].data["dry_run"]
        assert by_policy["trial"].data["dry_run"] and by_policy["trial"].data["would"] == "kill"
        assert all(e.command_id is None for e in events)  # no kill was written
        assert await audit_events(conn.js, conn.ns, "kill") == []
        assert ctl.stats.policy_alerts >= 1 and ctl.stats.policy_dry_runs >= 1
        assert ctl.stats.policy_kills == 0
        await agent.heartbeat()
        assert not agent.killed
    finally:
        await agent.stop()


async def test_a_pause_policy_pauses_when_the_budget_is_gone_and_a_raised_budget_resumes_it(
    conn: Connection, ctl: Controller, mesh: AsyncMesh, settings: Settings
) -> None:
    await mesh.set_policy("cap", MAILER, ["emails<=3"], action="pause")
    await policies_loaded(ctl, 1)
    agent = await async_agent(settings, "p1")
    try:
        for _ in range(3):
            await agent.spend(emails=1)
        blocked = asyncio.create_task(agent.spend(emails=1))
        await eventually(lambda: _true(agent.status is Status.PAUSED), what="the instance paused")
        assert not blocked.done()
        rec = agent.kill_record
        assert rec is not None and rec.actor == "policy:cap" and rec.reason and "emails<=3" in rec.reason
        await mesh.set_policy("cap", MAILER, ["emails<=4"], action="pause")
        await eventually(lambda: _true(limit_of(ctl, "cap") == 4), what="the raised limit loaded")
        await mesh.resume(MAILER, reason="budget raised", wait=5)
        await asyncio.wait_for(blocked, 30)
        assert agent.usage["emails"] == 4 and agent.status is Status.ACTIVE
    finally:
        await agent.stop()


async def test_a_counter_no_policy_limits_is_spent_freely(
    conn: Connection, ctl: Controller, settings: Settings
) -> None:
    agent = await async_agent(settings, "u1")
    try:
        for _ in range(50):
            await agent.spend(tokens=10)
        assert agent.usage == {"tokens": 500.0}
        assert ctl.stats.lease_requests == 1  # one question, answered "unlimited" for a while
        with pytest.raises(ConfigError):
            await agent.spend(tokens=-1)
    finally:
        await agent.stop()


async def test_usage_shows_the_limit_spent_leased_out_and_left(
    conn: Connection, ctl: Controller, mesh: AsyncMesh, settings: Settings
) -> None:
    await mesh.set_policy("cap", MAILER, ["emails<=100"])
    await policies_loaded(ctl, 1)
    agent = await async_agent(settings, "s1")
    try:
        for _ in range(10):
            await agent.spend(emails=1)

        async def budget() -> tuple[float, float, float] | None:
            (row,) = (await mesh.usage(MAILER)).agents[0].budgets
            got = (row.spent, row.leased_out, row.left)
            return got if got == (10, 40, 50) else None  # a lease of half the budget, 10 spent

        await eventually(budget, what="usage to show the lease")
    finally:
        await agent.stop()

    async def returned() -> bool:
        (row,) = (await mesh.usage(MAILER)).agents[0].budgets
        return (row.spent, row.leased_out, row.left) == (10, 0, 90)

    await eventually(returned, what="the unspent lease given back on stop")

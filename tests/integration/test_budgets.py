"""Budgets that hold (issue 18): counted from the agents' own logs, with instances racing flat out."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent_sdk import Agent, AgentKilled, AsyncAgent
from controller.runner import Controller
from mesh.client.operator import AsyncMesh
from mesh.errors import ConfigError, MeshTimeout
from mesh.protocol import quota
from mesh.protocol.codec import decode
from mesh.protocol.models import AuditEvent, Status
from mesh.protocol.quota import Ledger
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection
from mesh.transport.server import EmbeddedServer
from tests.integration.controller_helpers import (
    audit_events,
    eventually,
    fast_options,
    running_controller,
)

pytestmark = pytest.mark.timeout(120)

MAILER = "agent://acme/prod/mailer"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """A server of this module's own, as the policy tests have (heavy traffic, kept apart)."""
    server = EmbeddedServer(tmp_path_factory.mktemp("nats-budgets"), port=0)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def ctl(conn: Connection, settings: Settings) -> AsyncIterator[Controller]:
    async with running_controller(settings, fast_options(policy_reload_every=0.2)) as c:
        yield c


@pytest.fixture
async def mesh(conn: Connection, settings: Settings) -> AsyncIterator[AsyncMesh]:
    async with AsyncMesh(settings) as m:
        yield m


async def policies_loaded(ctl: Controller, n: int) -> None:
    async def check() -> bool:
        return ctl.stats.policies == n

    await eventually(check, what=f"{n} policies loaded")


class Mailer(threading.Thread):
    """One instance sending emails as fast as it can; every email sent is a line in its own log."""

    def __init__(self, settings: Settings, instance: str, log: Path, loop: Callable[[Agent, Path], None]):
        super().__init__(name=f"mailer-{instance}", daemon=True)
        self.agent = Agent(
            MAILER, instance=instance, settings=settings, hard_kill=False, heartbeat_interval=0.2
        )
        self.log = log
        self.loop = loop
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with self.agent:
                self.loop(self.agent, self.log)
        except BaseException as exc:
            self.error = exc

    @property
    def sent(self) -> int:
        return len(self.log.read_text().splitlines()) if self.log.exists() else 0


def send_email(log: Path, n: int) -> None:
    with log.open("a") as f:
        f.write(f"sent email {n}\n")


def spend_before(agent: Agent, log: Path) -> None:
    n = 0
    while True:
        agent.spend(emails=1)  # before the action: no lease, no email
        send_email(log, n)
        n += 1


def spend_after(agent: Agent, log: Path) -> None:
    """The action first, then its cost: the one action that finds the budget gone is done already."""
    n = 0
    while True:
        agent.heartbeat()
        send_email(log, n)
        n += 1
        agent.spend(emails=1)


async def race(
    settings: Settings, tmp_path: Path, loop: Callable[[Agent, Path], None], n: int
) -> list[Mailer]:
    mailers = [Mailer(settings, f"m{i}", tmp_path / f"m{i}.log", loop) for i in range(n)]
    for m in mailers:
        m.start()
    for m in mailers:
        await asyncio.to_thread(m.join, 60)
    assert not any(m.is_alive() for m in mailers), "an instance never stopped"
    return mailers


def killed_by(mailers: list[Mailer], policy: str) -> None:
    for m in mailers:
        assert isinstance(m.error, AgentKilled), m.error
        assert m.error.record is not None and m.error.record.actor == f"policy:{policy}"


async def quota_ledger(conn: Connection, key: str) -> Ledger:
    kv = await conn.js.key_value(conn.ns.quota_bucket)
    return decode(Ledger, (await kv.get(key)).value or b"")


def granted(mailers: list[Mailer]) -> float:
    return sum(m.agent._core.quota.wallet.granted.get("emails", 0.0) for m in mailers)


def released(mailers: list[Mailer]) -> float:
    return sum(m.agent._core.quota.wallet.released.get("emails", 0.0) for m in mailers)


BUDGET_KEY = "cap.emails.3600s.acme.prod.mailer"


@pytest.mark.parametrize("n", [2, 4, 8])
async def test_spending_before_the_action_never_exceeds_the_limit(
    conn: Connection, ctl: Controller, mesh: AsyncMesh, settings: Settings, tmp_path: Path, n: int
) -> None:
    await mesh.set_policy("cap", MAILER, ["emails<=100/1h"])
    await policies_loaded(ctl, 1)
    mailers = await race(settings, tmp_path, spend_before, n)
    killed_by(mailers, "cap")
    total = sum(m.sent for m in mailers)
    assert total <= 100, f"sent {total} emails under emails<=100/1h"
    # Every unit is accounted for: the ledger charged exactly what the instances were granted
    # less what they gave back on their way out, and all of the budget was handed out.
    ledger = await quota_ledger(conn, BUDGET_KEY)
    assert quota.counted(ledger, time.time()) == granted(mailers) - released(mailers)
    assert granted(mailers) == 100
    assert total == 100 - released(mailers)


@pytest.mark.parametrize("n", [2, 4])
async def test_spending_after_the_action_overshoots_by_at_most_one_per_instance(
    ctl: Controller, mesh: AsyncMesh, settings: Settings, tmp_path: Path, n: int
) -> None:
    await mesh.set_policy("cap", MAILER, ["emails<=100/1h"])
    await policies_loaded(ctl, 1)
    mailers = await race(settings, tmp_path, spend_after, n)
    killed_by(mailers, "cap")
    total = sum(m.sent for m in mailers)
    assert total <= 100 + len(mailers), f"sent {total} emails under emails<=100/1h"


def start(settings: Settings, tmp_path: Path, loop: Callable[[Agent, Path], None], n: int) -> list[Mailer]:
    mailers = [Mailer(settings, f"m{i}", tmp_path / f"m{i}.log", loop) for i in range(n)]
    for m in mailers:
        m.start()
    return mailers


def spend_then_work(agent: Agent, log: Path) -> None:
    """Spend before each email, and take a millisecond to send it, so that a restart lands mid-run."""
    n = 0
    while True:
        agent.spend(emails=1)
        send_email(log, n)
        n += 1
        agent.sleep(0.001)


@pytest.mark.parametrize("how", ["restart", "standby takeover"])
async def test_a_controller_restart_during_spending_loses_no_grant_and_doubles_none(
    conn: Connection, mesh: AsyncMesh, settings: Settings, tmp_path: Path, how: str
) -> None:
    limit = 1500
    opts = fast_options(policy_reload_every=0.2)
    async with contextlib.AsyncExitStack() as outer:
        first_stack = contextlib.AsyncExitStack()
        first = await first_stack.enter_async_context(running_controller(settings, opts))
        if how == "standby takeover":
            standby = await outer.enter_async_context(running_controller(settings, opts, wait_active=False))
        await mesh.set_policy("cap", MAILER, [f"emails<={limit}/1h"])
        await policies_loaded(first, 1)
        mailers = start(settings, tmp_path, spend_then_work, 2)
        await eventually(lambda: _true(sum(m.sent for m in mailers) >= 200), what="spending under way")
        await first_stack.aclose()  # the active controller goes, mid-run
        if how == "restart":
            second = await outer.enter_async_context(running_controller(settings, opts))
        else:
            second = standby
            await eventually(lambda: _true(standby.ingesting), what="the standby to take over")
        for m in mailers:
            await asyncio.to_thread(m.join, 60)
        assert not any(m.is_alive() for m in mailers)
        assert first.stats.lease_grants > 0 and second.stats.lease_grants > 0  # both granted
    killed_by(mailers, "cap")
    total = sum(m.sent for m in mailers)
    ledger = await quota_ledger(conn, BUDGET_KEY)
    # No grant lost (everything the ledger charged reached an instance) and none doubled (nothing
    # an instance holds is missing from the ledger): the two sums are equal, and the whole budget
    # was handed out exactly once.
    assert quota.counted(ledger, time.time()) == granted(mailers) - released(mailers)
    assert granted(mailers) == limit
    assert total == limit - released(mailers) <= limit


async def _true(value: bool) -> bool:
    return value


def limit_of(ctl: Controller, policy: str) -> float | None:
    loaded = ctl.engine.book.policies.get(policy) if ctl.engine else None
    return loaded.policy.limits[0].value if loaded else None


async def async_agent(settings: Settings, instance: str, **kw: Any) -> AsyncAgent:
    agent = AsyncAgent(
        MAILER, instance=instance, settings=settings, hard_kill=False, heartbeat_interval=0.2, **kw
    )
    return await agent.start()


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


async def test_guard_with_a_cost_spends_before_each_call(
    conn: Connection, ctl: Controller, mesh: AsyncMesh, settings: Settings
) -> None:
    await mesh.set_policy("cap", MAILER, ["emails<=5"])
    await policies_loaded(ctl, 1)
    agent = await async_agent(settings, "g1")
    sent: list[int] = []
    try:

        @agent.guard(cost={"emails": 1})
        async def send(n: int) -> None:
            sent.append(n)

        async def send_ten() -> None:
            for n in range(10):
                await send(n)

        with pytest.raises(AgentKilled) as info:
            await send_ten()
        assert sent == [0, 1, 2, 3, 4]  # the sixth call was refused before it ran
        assert info.value.record is not None and info.value.record.actor == "policy:cap"
    finally:
        await agent.stop()


def guarded_sends(settings: Settings, sent: list[int]) -> None:
    with Agent(MAILER, instance="g2", settings=settings, hard_kill=False) as agent:

        @agent.guard(cost={"emails": 1})
        def send(n: int) -> None:
            sent.append(n)

        @agent.guard
        def free() -> None:
            return None

        for n in range(10):
            free()
            send(n)


async def test_sync_guard_with_a_cost_spends_before_each_call(
    ctl: Controller, mesh: AsyncMesh, settings: Settings
) -> None:
    await mesh.set_policy("cap", MAILER, ["emails<=3"])
    await policies_loaded(ctl, 1)
    sent: list[int] = []
    with pytest.raises(AgentKilled):
        await asyncio.to_thread(guarded_sends, settings, sent)
    assert sent == [0, 1, 2]


async def test_the_readme_budget_example_sends_exactly_the_budget(
    ctl: Controller, mesh: AsyncMesh, settings: Settings
) -> None:
    await mesh.set_policy("cap", MAILER, ["emails<=20/1h"])
    await policies_loaded(ctl, 1)
    env = {**os.environ, "NATS_URL": settings.nats_url, "MESH_PREFIX": settings.prefix}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "examples" / "budget_agent.py"), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()[-2000:]
    lines = out.decode().splitlines()
    assert lines[:-1] == [f"sent email {n}" for n in range(20)]
    assert lines[-1].startswith("stopped after 20 emails: agent killed by policy:cap")


def spend_from_threads(settings: Settings, threads: int, sent: list[int]) -> list[BaseException | None]:
    """One sync agent, several threads spending from it flat out; each logs what it sent."""
    errors: list[BaseException | None] = [None] * threads
    lock = threading.Lock()
    with Agent(MAILER, instance="t1", settings=settings, hard_kill=False) as agent:

        def work(i: int) -> None:
            try:
                while True:
                    agent.spend(emails=1)
                    with lock:
                        sent.append(i)
            except BaseException as exc:
                errors[i] = exc

        pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join(60)
        assert agent._core.quota.wallet.granted["emails"] == 200
    return errors


async def test_threads_of_one_agent_spending_together_never_exceed_the_limit(
    ctl: Controller, mesh: AsyncMesh, settings: Settings
) -> None:
    await mesh.set_policy("cap", MAILER, ["emails<=200/1h"])
    await policies_loaded(ctl, 1)
    sent: list[int] = []
    with contextlib.suppress(AgentKilled):  # leaving the with block re-raises nothing else
        errors = await asyncio.to_thread(spend_from_threads, settings, 4, sent)
    assert len(sent) <= 200
    assert all(isinstance(e, AgentKilled) for e in errors), errors


async def test_spend_on_a_stopped_agent_is_refused(settings: Settings, conn: Connection) -> None:
    agent = await async_agent(settings, "x1")
    await agent.stop()
    with pytest.raises(ConfigError):
        await asyncio.wait_for(agent.spend(emails=1), 10)

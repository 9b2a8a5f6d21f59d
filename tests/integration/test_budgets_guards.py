"""Budgets spent through guards and threads: each call costs before it runs, never past the limit."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading

import pytest

from agent_sdk import Agent, AgentKilled
from controller.runner import Controller
from mesh.client.operator import AsyncMesh
from mesh.errors import ConfigError
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection

# The module's own server, its controller and operator (fixtures, used by their names).
from tests.integration.budget_fixtures import budget_controller, budget_mesh, budget_server  # noqa: F401
from tests.integration.budget_helpers import (
    MAILER,
    ROOT,
    async_agent,
    policies_loaded,
)

pytestmark = pytest.mark.timeout(120)


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

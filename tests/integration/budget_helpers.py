"""Shared by the budget tests (test_budgets_*): the racing mailers, fixtures, and ledger sums."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent_sdk import Agent, AgentKilled, AsyncAgent
from controller.runner import Controller
from mesh.protocol.codec import decode
from mesh.protocol.quota import Ledger
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection
from tests.integration.controller_helpers import (
    eventually,
)

pytestmark = pytest.mark.timeout(120)

MAILER = "agent://acme/prod/mailer"
ROOT = Path(__file__).resolve().parents[2]


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

"""Budgets that hold (issue 18): counted from the agents' own logs, with instances racing flat out."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from agent_sdk import Agent, AgentKilled
from controller.runner import Controller
from mesh import quota
from mesh.codec import decode
from mesh.connection import Connection
from mesh.operator import AsyncMesh
from mesh.quota import Ledger
from mesh.server import EmbeddedServer
from mesh.settings import Settings
from tests.integration.controller_helpers import eventually, fast_options, running_controller

pytestmark = pytest.mark.timeout(120)

MAILER = "agent://acme/prod/mailer"


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


@pytest.mark.parametrize("n", [2, 4])
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


async def test_spending_after_the_action_overshoots_by_at_most_one_per_instance(
    ctl: Controller, mesh: AsyncMesh, settings: Settings, tmp_path: Path
) -> None:
    await mesh.set_policy("cap", MAILER, ["emails<=100/1h"])
    await policies_loaded(ctl, 1)
    mailers = await race(settings, tmp_path, spend_after, 2)
    killed_by(mailers, "cap")
    total = sum(m.sent for m in mailers)
    assert total <= 100 + len(mailers), f"sent {total} emails under emails<=100/1h"

"""A small soak of the real SDK (part of ``make chaos`` and ``make test``): 200 ``AsyncAgent``
instances on one shared connection, through random kill/resume cycles issued back to back.

At the end, what each agent believes is what the kill records say; every instance a record
covers has acknowledged that record's revision; killed instances do no work while the others
do; and resuming everything brings every one of them back.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random

import pytest

from agent_sdk import AgentKilled, AsyncAgent
from mesh.client.operator import AsyncMesh
from mesh.protocol.models import EventType
from mesh.protocol.target import AgentURI, parse_agent_uri, parse_target
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection

from .helpers import all_events, eventually

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(240)]

ORGS, ENVS, NAMES, INSTANCES = 2, 2, 5, 10  # 200 instances
CYCLES = 12


def _target(rng: random.Random) -> str:
    org = rng.choice(["*", *(f"org{o}" for o in range(ORGS))])
    env = rng.choice(["*", *(f"env{e}" for e in range(ENVS))])
    return f"agent://{org}/{env}/{rng.choice(['*', *(f'name{n}' for n in range(NAMES))])}"


class Member:
    def __init__(self, agent: AsyncAgent) -> None:
        self.agent = agent
        self.done = 0
        self.task = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        @self.agent.guard
        async def act() -> None:
            self.done += 1

        with contextlib.suppress(asyncio.CancelledError):
            while True:
                with contextlib.suppress(AgentKilled):  # on_kill="pause": a cancelled act re-runs
                    await act()
                await self.agent.sleep(0.25)


async def test_real_agents_through_random_kill_resume_cycles(settings: Settings, conn: Connection) -> None:
    rng = random.Random(20261203)
    shared = await Connection.open(settings, name="soak-shared")
    fleet = [
        (f"agent://org{o}/env{e}/name{n}", f"i{i}")
        for o, e, n, i in itertools.product(range(ORGS), range(ENVS), range(NAMES), range(INSTANCES))
    ]
    agents = [
        AsyncAgent(
            uri, instance=inst, connection=shared, hard_kill=False, on_kill="pause", heartbeat_interval=5.0
        )
        for uri, inst in fleet
    ]
    members: list[Member] = []
    try:
        for start in range(0, len(agents), 50):
            await asyncio.gather(*(a.start() for a in agents[start : start + 50]))
        members = [Member(a) for a in agents]
        await eventually(lambda: all(m.done > 0 for m in members), what="every agent to work")
        async with AsyncMesh(settings) as op:
            for _ in range(CYCLES):
                held = [h.target for h in await op.records()]
                if held and rng.random() < 0.4:
                    await op.resume(rng.choice(held), reason="soak", wait=0)
                else:
                    await op.kill(_target(rng), reason="soak", wait=0)
            records = await op.records()
            assert records, "the seed leaves some records in force"

            def covering(m: Member) -> list[int]:
                uri = parse_agent_uri(m.agent.uri)
                return [h.revision for h in records if _matches(h.target, uri, m.agent.instance)]

            await eventually(
                lambda: all(m.agent.killed == bool(covering(m)) for m in members),
                what="every agent to hold exactly the records in force",
            )

            async def acked() -> bool:
                halted = {
                    (e.agent_uri, e.instance, e.revision)
                    for e in await all_events(settings)
                    if e.type is EventType.HALTED
                }
                return all((m.agent.uri, m.agent.instance, r) in halted for m in members for r in covering(m))

            await eventually(acked, what="an ack of every record in force from every instance it covers")

            killed = [m for m in members if m.agent.killed]
            free = [m for m in members if not m.agent.killed]
            assert killed and free, "the seed leaves some of each"
            before = {id(m): m.done for m in members}
            # Each free agent acts again, a full pause of the same loop later: the killed ones had
            # that chance too, and none took it.
            await eventually(lambda: all(m.done > before[id(m)] for m in free), what="free agents to work")
            assert [m.done for m in killed] == [before[id(m)] for m in killed]

            for h in records:
                await op.resume(h.target, reason="soak over", wait=0)
            marks = {id(m): m.done for m in members}
            await eventually(
                lambda: all(not m.agent.killed and m.done > marks[id(m)] for m in members),
                what="every agent resumed and working",
            )
    finally:
        for m in members:
            m.task.cancel()
        await asyncio.gather(*(m.task for m in members), return_exceptions=True)
        for start in range(0, len(agents), 50):
            await asyncio.gather(*(a.stop() for a in agents[start : start + 50]), return_exceptions=True)
        await shared.close()


def _matches(target: str, uri: AgentURI, instance: str) -> bool:
    return parse_target(target).matches(uri, instance)

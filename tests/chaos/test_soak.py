"""Protocol and controller soak (bounded, ``make soak``): thousands of simulated instances
heartbeating through 50 kill/resume cycles with random targets. The push path alone (the control
republish, applied in revision order) brings every instance to what the kill records say; a re-read
from the KV then changes nothing; the controller's statuses agree, and the audit stream holds
exactly the expected events.

This checks the server, the controller and the wire protocol at a scale real agents cannot reach
on one machine, not the SDK: the simulated instances speak the protocol on one connection.
tests/chaos/test_soak_sdk.py runs real ``AsyncAgent`` instances through the same kind of cycles.

``make soak`` runs the full size (4,000 instances, 50 cycles; MESH_SOAK_INSTANCES and
MESH_SOAK_CYCLES change it); ``make test`` runs the same test at 400 instances and 10 cycles, so
that the soak itself cannot rot outside CI.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
from collections import Counter
from dataclasses import dataclass, field

import pytest
from nats.aio.msg import Msg

from controller import ControllerOptions, serve
from mesh.client.operator import AsyncMesh
from mesh.errors import MalformedMessage
from mesh.protocol.codec import encode
from mesh.protocol.models import AuditEvent, EventType, Heartbeat, Status
from mesh.protocol.subjects import key_to_target
from mesh.protocol.target import AgentURI
from mesh.runtime.settings import Settings
from mesh.transport.audit import publish_event
from mesh.transport.connection import Connection
from mesh.transport.control import parse_control_message, read_records

from .helpers import all_events, eventually

ORGS, ENVS, NAMES = 4, 5, 10
INSTANCES = int(os.environ.get("MESH_SOAK_INSTANCES", "20"))  # per agent: 4,000 instances by default
CYCLES = int(os.environ.get("MESH_SOAK_CYCLES", "50"))
FULL = pytest.param(INSTANCES, CYCLES, marks=[pytest.mark.soak, pytest.mark.timeout(900)], id="full")
SMOKE = pytest.param(2, 10, marks=[pytest.mark.chaos, pytest.mark.timeout(180)], id="smoke")
INTERVAL = 2.0


@dataclass
class SimInstance:
    agent: AgentURI
    instance: str
    revisions: dict[str, int] = field(default_factory=dict)
    records: dict[str, int] = field(default_factory=dict)  # key -> revision of the record in force
    halted: int = 0
    resumed: int = 0
    seq: int = 0

    @property
    def killed(self) -> bool:
        return bool(self.records)


class Simulator:
    def __init__(self, conn: Connection, instances: int) -> None:
        self.conn = conn
        self.ns = conn.ns
        self.instances: list[SimInstance] = []
        for o, e, n, i in itertools.product(range(ORGS), range(ENVS), range(NAMES), range(instances)):
            self.instances.append(SimInstance(AgentURI(f"org{o}", f"env{e}", f"name{n}"), f"i{i}"))
        self.by_key = {self.ns.instance_key(s.agent, s.instance): s for s in self.instances}
        self.pending: set[asyncio.Task[None]] = set()
        self.published = Counter[EventType]()

    def matching(self, key: str) -> list[SimInstance]:
        target = key_to_target(key)
        return [s for s in self.instances if target.matches(s.agent, s.instance)]

    def apply(self, s: SimInstance, key: str, revision: int, in_force: bool) -> None:
        if revision <= s.revisions.get(key, -1):
            return  # older than what we hold: ignored, as the SDK does
        s.revisions[key] = revision
        was = s.killed
        if in_force:
            s.records[key] = revision
        else:
            s.records.pop(key, None)
        if s.killed != was:
            self.ack(s, EventType.HALTED if s.killed else EventType.RESUMED, revision)

    def ack(self, s: SimInstance, etype: EventType, revision: int) -> None:
        if etype is EventType.HALTED:
            s.halted += 1
        else:
            s.resumed += 1
        event = AuditEvent(type=etype, agent_uri=str(s.agent), instance=s.instance, revision=revision)
        task = asyncio.create_task(self._publish(event))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def _publish(self, event: AuditEvent) -> None:
        await publish_event(self.conn.js, self.ns, event, attempts=10)
        self.published[event.type] += 1

    async def on_control(self, msg: Msg) -> None:
        try:
            update = parse_control_message(self.ns, msg)
        except MalformedMessage:
            return
        for s in self.matching(update.key):
            self.apply(s, update.key, update.revision, update.in_force)

    async def resync(self) -> None:
        """Re-read every matching key from the KV (what the SDK does on reconnect and periodically)."""
        kv = await self.conn.js.key_value(self.ns.control_bucket)
        for s in self.instances:
            for u in await read_records(kv, self.ns.matching_control_keys(s.agent, s.instance)):
                self.apply(s, u.key, u.revision, u.in_force)

    async def heartbeats(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            for s in self.instances:
                s.seq += 1
                hb = Heartbeat(
                    agent_uri=str(s.agent), instance=s.instance, seq=s.seq, interval=INTERVAL,
                    status=Status.PAUSED if s.killed else Status.ACTIVE, on_kill="pause",
                    kill_keys=sorted(s.records),
                )  # fmt: skip
                await self.conn.nc.publish(self.ns.heartbeat_subject(s.agent, s.instance), encode(hb))
            await self.conn.nc.flush()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), INTERVAL)


def random_target(rng: random.Random) -> str:
    org = rng.choice(["*", *(f"org{o}" for o in range(ORGS))])
    env = rng.choice(["*", *(f"env{e}" for e in range(ENVS))])
    name = rng.choice(["*", *(f"name{n}" for n in range(NAMES))])
    return f"agent://{org}/{env}/{name}"


@pytest.mark.parametrize(("instances", "cycles"), [FULL, SMOKE])
async def test_soak_kill_resume_cycles(
    settings: Settings, conn: Connection, instances: int, cycles: int
) -> None:
    rng = random.Random(20251124)
    sim = Simulator(conn, instances)
    await conn.nc.subscribe(f"{conn.ns.prefix}.ctl.>", cb=sim.on_control, pending_msgs_limit=-1)
    await conn.nc.flush()
    stop = asyncio.Event()
    hb_task = asyncio.create_task(sim.heartbeats(stop))
    ctl = asyncio.create_task(
        serve(
            settings,
            stop=stop,
            options=ControllerOptions(lost_after=120.0, refresh_every=5.0, sweep_every=1.0),
        )
    )
    kills = resumes = 0
    try:
        async with AsyncMesh(settings) as op:

            async def listed() -> bool:
                return len(await op.list_instances()) == len(sim.instances)

            await eventually(listed, timeout=120, what="the controller to list every instance")
            for _ in range(cycles):
                held = [h.key for h in await op.records()]
                if held and rng.random() < 0.45:
                    key = rng.choice(held)
                    await op.resume(str(key_to_target(key)), reason="soak", wait=0.0)
                    resumes += 1
                else:
                    await op.kill(random_target(rng), reason="soak", wait=0.0)
                    kills += 1
                # sleep-ok: paces the operator workload (a random gap between commands)
                await asyncio.sleep(rng.uniform(0.0, 0.3))

            truth = {h.key for h in await op.records()}

            def expected_killed(s: SimInstance) -> bool:
                return any(k in truth for k in conn.ns.matching_control_keys(s.agent, s.instance))

            def wrong() -> list[str]:
                return [f"{s.agent}#{s.instance}" for s in sim.instances if s.killed != expected_killed(s)]

            # the pushes alone converge on the records (no re-read has happened yet) ...
            await eventually(lambda: not wrong(), timeout=120, what="the pushes to converge on the records")
            # ... and a re-read of every record from the KV finds nothing to change
            acked = sum(s.halted + s.resumed for s in sim.instances)
            await sim.resync()
            assert wrong() == [] and sum(s.halted + s.resumed for s in sim.instances) == acked
            await eventually(lambda: not sim.pending, timeout=120, what="every acknowledgement published")

            async def statuses_agree() -> bool:
                rows = {(r.agent_uri, r.instance): r.status for r in await op.list_instances()}
                return all(
                    rows.get((str(s.agent), s.instance)) == (Status.PAUSED if s.killed else Status.ACTIVE)
                    for s in sim.instances
                )

            await eventually(
                statuses_agree, timeout=180, what="the controller's statuses to match the records"
            )

        events = await all_events(settings)
        types = Counter(e.type for e in events)
        assert types[EventType.KILL] == kills
        assert types[EventType.RESUME] == resumes
        assert (
            types[EventType.HALTED] == sum(s.halted for s in sim.instances) == sim.published[EventType.HALTED]
        )
        assert types[EventType.RESUMED] == sum(s.resumed for s in sim.instances)
        assert len({e.id for e in events}) == len(events)
        assert types[EventType.LOST] == 0
    finally:
        stop.set()
        await asyncio.gather(hb_task, return_exceptions=True)
        await asyncio.wait_for(ctl, 30)

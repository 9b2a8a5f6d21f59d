"""Controller ``kill -9`` during a kill: the kill still lands, and the restarted controller loses and
doubles no event (it rebuilds from JetStream, and its durable consumer resumes where it stopped)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from nats.aio.msg import Msg

from mesh.client.operator import AsyncMesh
from mesh.protocol.codec import encode
from mesh.protocol.models import EventType, Heartbeat, Status
from mesh.protocol.reports import KillReport
from mesh.protocol.target import parse_agent_uri
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection
from mesh.transport.provision import ProvisionOptions, provision
from mesh.transport.server import EmbeddedServer
from tests.integration.controller_helpers import Pacer
from tests.waiting import SILENT_WINDOW

from .helpers import all_events, count, eventually, stalled, start_fleet, stop_fleet

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(180)]

MESH_CLI = str(Path(sys.executable).parent / "mesh")
TARGET = "agent://acme/prod/mailer"
GHOST = "agent://acme/prod/ghost"


def start_controller(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "NATS_URL": settings.nats_url,
        "MESH_PREFIX": settings.prefix,
        "MESH_ACTOR": "controller",
    }
    args = ["--lost-after", "4", "--lease-ttl", "2", "--refresh-every", "0.5", "--sweep-every", "0.2"]
    with open(log, "ab") as out:
        return subprocess.Popen(
            [MESH_CLI, "controller", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


async def test_controller_kill9_during_a_kill(own_server: EmbeddedServer, tmp_path: Path) -> None:
    settings = Settings(nats_url=own_server.url, prefix="c" + uuid.uuid4().hex[:8], actor="chaos")
    async with Connection(settings) as conn:
        await provision(conn.js, conn.ns, ProvisionOptions())
    first = start_controller(settings, tmp_path / "controller-1.log")
    second: subprocess.Popen[bytes] | None = None
    workers = await start_fleet(settings, [(TARGET, f"i{k}") for k in range(4)])
    instances = sorted(w.instance for w in workers)
    # A fifth instance of the target that heartbeats but never acknowledges: the kill's report
    # waits for it, so the kill is still in flight when the controller dies (deterministically).
    mute = await Connection.open(settings, name="chaos-mute")
    pacer = Pacer(mute.nc, mute.ns, TARGET, "mute").start()
    try:
        async with AsyncMesh(settings) as op:

            async def all_status(status: Status) -> bool:
                rows = {r.instance: r.status for r in await op.list_instances(TARGET)}
                return all(rows.get(i) is status for i in instances) and "mute" in rows

            await eventually(lambda: all_status(Status.ACTIVE), what="the controller to list the fleet")

            # kill -9 the controller the moment the kill is stored (its KILL event), mid-kill
            in_flight: list[bool] = []
            kill: asyncio.Task[KillReport] | None = None

            async def on_kill_event(msg: Msg) -> None:
                if not in_flight:
                    first.send_signal(signal.SIGKILL)
                    in_flight.append(kill is not None and not kill.done())

            sub = await mute.nc.subscribe(mute.ns.audit_filter(EventType.KILL.value), cb=on_kill_event)
            await mute.nc.flush()
            kill = asyncio.create_task(op.kill(TARGET, reason="chaos: controller crash", wait=SILENT_WINDOW))
            await eventually(lambda: in_flight, what="the KILL event")
            await sub.unsubscribe()
            assert in_flight == [True], "the controller died after the kill had finished"
            await asyncio.to_thread(first.wait, 10)
            report = await kill
            assert sorted(r.instance for r in report.instances) == instances, report
            assert [m.instance for m in report.missing] == ["mute"]
            await eventually(lambda: stalled(workers), what="every instance to halt without a controller")

            second = start_controller(settings, tmp_path / "controller-2.log")
            await eventually(lambda: all_status(Status.PAUSED), what="the new controller to see every halt")

            await op.resume(TARGET, reason="chaos over", wait=5.0)
            await eventually(lambda: all_status(Status.ACTIVE), what="active again after resume")
        await pacer.stop()

        events = await all_events(settings)
        assert len({e.id for e in events}) == len(events), "an event was stored twice"
        fleet = {(w.uri, w.instance): 1 for w in workers}
        assert count(events, EventType.STARTED) == fleet
        assert count(events, EventType.HALTED, revision=report.revision) == fleet
        assert count(events, EventType.RESUMED) == fleet
        # the restart invents no transition for live instances
        assert count(events, EventType.STALE) == {}
        assert count(events, EventType.LOST) == {}
        assert count(events, EventType.RECOVERED) == {}
    finally:
        await pacer.stop()
        await mute.close()
        await stop_fleet(workers)
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)


async def test_restarted_controller_marks_lost_what_went_silent_meanwhile(
    own_server: EmbeddedServer, tmp_path: Path
) -> None:
    settings = Settings(nats_url=own_server.url, prefix="c" + uuid.uuid4().hex[:8], actor="chaos")
    async with Connection(settings) as conn:
        await provision(conn.js, conn.ns, ProvisionOptions())
    first = start_controller(settings, tmp_path / "controller-1.log")
    second: subprocess.Popen[bytes] | None = None
    try:
        async with AsyncMesh(settings) as op:
            # A ghost instance heartbeats, then falls silent: the first controller marks it stale.
            async with Connection(settings) as raw:
                agent = parse_agent_uri(GHOST)
                seq = 0

                async def ghost_listed() -> bool:  # heartbeat until the (active) controller has it
                    nonlocal seq
                    seq += 1
                    hb = Heartbeat(agent_uri=GHOST, instance="g1", seq=seq, interval=0.3)
                    await raw.nc.publish(raw.ns.heartbeat_subject(agent, "g1"), encode(hb))
                    return (await op.get(GHOST, "g1")).status is Status.ACTIVE

                await eventually(ghost_listed, what="the controller to list the ghost")

            async def ghost_stale() -> bool:
                return count(await all_events(settings), EventType.STALE)[(GHOST, "g1")] == 1

            await eventually(ghost_stale, what="the ghost to go stale")

            first.send_signal(signal.SIGKILL)
            first.wait(10)
            second = start_controller(settings, tmp_path / "controller-2.log")

            async def ghost_lost() -> bool:
                return (await op.get(GHOST, "g1")).status is Status.LOST

            await eventually(ghost_lost, what="the ghost to be lost")
        events = await all_events(settings)
        assert len({e.id for e in events}) == len(events), "an event was stored twice"
        assert count(events, EventType.STALE) == {(GHOST, "g1"): 1}
        assert count(events, EventType.LOST) == {(GHOST, "g1"): 1}
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(10)

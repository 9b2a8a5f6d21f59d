"""Controller restarts, standby takeover after SIGKILL, and a nats-server restart under it."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from controller.lease import LEASE_KEY
from mesh.protocol.models import AuditEvent, EventType, Status
from mesh.runtime.settings import Settings
from mesh.transport.audit import publish_event
from mesh.transport.auditwalk import verify_stream
from mesh.transport.connection import Connection
from mesh.transport.provision import provision
from mesh.transport.server import EmbeddedServer
from tests.integration.controller_helpers import (
    ControllerProcess,
    Pacer,
    audit_events,
    eventually,
    fast_options,
    heartbeat,
    running_controller,
    send,
    wait_status,
    written_after,
)

URI = "agent://acme/prod/mailer"


async def _transition_counts(conn: Connection) -> Counter[str]:
    events = await audit_events(conn.js, conn.ns, "stale", "lost", "recovered")
    return Counter(f"{e.instance}:{e.type.value}" for e in events)


async def test_restarts_neither_lose_nor_double_audit_events(conn: Connection, settings: Settings) -> None:
    js, ns = conn.js, conn.ns
    key = "acme.prod.mailer.w1"
    pacer = Pacer(conn.nc, ns, URI, "w1", interval=0.5)
    async with running_controller(settings, fast_options(lost_after=3.0)):
        pacer.start()
        await wait_status(js, ns, key, Status.ACTIVE)
        await pacer.stop()
        await wait_status(js, ns, key, Status.STALE)
    # silent while no controller runs: the next one finds it lost on its first sweep
    async with running_controller(settings, fast_options(lost_after=3.0)):
        await wait_status(js, ns, key, Status.LOST)
        pacer.start()
        await wait_status(js, ns, key, Status.ACTIVE)
    async with running_controller(settings, fast_options(lost_after=3.0)):
        # A wrong re-detection has its chance: two refresh writes (refresh_every=0.5) by this
        # controller, each after many of its sweeps (sweep_every=0.1), while the instance beats.
        mark = datetime.now(UTC)
        for _ in range(2):
            mark = (await written_after(js, ns, key, mark)).last_seen
    await pacer.stop()
    assert await _transition_counts(conn) == {"w1:stale": 1, "w1:lost": 1, "w1:recovered": 1}
    # three controllers, one after the other: their chains verify (each restart starts a new one)
    report = await verify_stream(conn)
    assert report.ok and report.unchained == 0, report.broken


async def _lease_holder(conn: Connection) -> str | None:
    kv = await conn.js.key_value(conn.ns.leases_bucket)
    try:
        entry = await kv.get(LEASE_KEY)
    except Exception:
        return None
    holder: str = json.loads(entry.value or b"{}").get("holder", "")
    return holder or None


@pytest.mark.chaos
async def test_standby_takes_over_when_the_active_process_is_killed(
    conn: Connection, settings: Settings, tmp_path: Path
) -> None:
    js, ns = conn.js, conn.ns
    args = ["--lease-ttl", "1.5", "--lost-after", "4", "--refresh-every", "0.5", "--sweep-every", "0.1"]
    procs = [ControllerProcess(settings, tmp_path / f"c{i}.log", *args) for i in range(2)]
    pacer = Pacer(conn.nc, ns, URI, "i1", interval=0.5).start()
    try:
        await wait_status(js, ns, "acme.prod.mailer.i1", Status.ACTIVE)
        holder = await eventually(lambda: _lease_holder(conn), what="a lease holder")
        pid = int(holder.split("-")[-2])
        (active,) = [p for p in procs if p.pid == pid]
        (standby,) = [p for p in procs if p.pid != pid]
        active.kill()

        async def taken_over() -> str | None:
            now = await _lease_holder(conn)
            return now if now and now != holder else None

        new_holder = await eventually(taken_over, what="the standby to take the lease")
        assert int(new_holder.split("-")[-2]) == standby.pid
        # the new active controller does the work: a new instance appears, a silent one is lost.
        # i2 heartbeats periodically, as agents do: a heartbeat sent before the new holder has
        # subscribed is simply not seen (core NATS), the next one is.
        newcomer = Pacer(conn.nc, ns, URI, "i2", interval=0.5).start()
        try:
            await wait_status(js, ns, "acme.prod.mailer.i2", Status.ACTIVE)
        finally:
            await newcomer.stop()
        await pacer.stop()
        await wait_status(js, ns, "acme.prod.mailer.i1", Status.LOST)
        assert standby.terminate() == 0
    finally:
        await pacer.stop()
        for p in procs:
            p.kill()
    counts = await _transition_counts(conn)
    assert (counts["i1:stale"], counts["i1:lost"], counts["i1:recovered"]) == (1, 1, 0)
    report = await verify_stream(conn)  # a SIGKILLed writer's chain just ends: no break
    assert report.ok and report.unchained == 0, report.broken


@pytest.mark.chaos
async def test_controller_survives_a_server_restart(own_server: EmbeddedServer, prefix: str) -> None:
    settings = Settings(nats_url=own_server.url, prefix=prefix, actor="tester", connect_timeout=3.0)
    async with Connection(settings, name="test") as setup:
        await provision(setup.js, setup.ns)
    async with running_controller(settings, fast_options(lost_after=30.0)):
        own_server.restart()
        conn = await Connection.open(settings, name="test-after")
        try:
            js, ns = conn.js, conn.ns

            async def seen() -> bool:
                await send(conn.nc, ns, heartbeat(URI, "after", interval=30.0))
                rec_kv = await js.key_value(ns.instances_bucket)
                try:
                    await rec_kv.get("acme.prod.mailer.after")
                except Exception:
                    return False
                return True

            await eventually(seen, timeout=45, what="heartbeats to be ingested after the restart")
            await publish_event(js, ns, AuditEvent(type=EventType.STOPPED, agent_uri=URI, instance="after"))
            await wait_status(js, ns, "acme.prod.mailer.after", Status.STOPPED, timeout=45)
        finally:
            await conn.close()

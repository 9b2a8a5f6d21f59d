"""The controller against a real nats-server: transitions, lifecycle events, bad input, coalescing."""

from __future__ import annotations

import asyncio
import math
import time

from mesh.protocol.models import AuditEvent, EventType, Status
from mesh.runtime.settings import Settings
from mesh.transport.audit import publish_event
from mesh.transport.connection import Connection
from tests.integration.controller_helpers import (
    Pacer,
    audit_events,
    eventually,
    fast_options,
    heartbeat,
    running_controller,
    send,
    srv_request,
    status_of,
    wait_status,
)

URI = "agent://acme/prod/mailer"


async def test_active_stale_lost_recovered_each_audited_once(conn: Connection, settings: Settings) -> None:
    js, ns = conn.js, conn.ns
    key = "acme.prod.mailer.w1"
    async with running_controller(settings, fast_options(lost_after=3.0)):
        pacer = Pacer(conn.nc, ns, URI, "w1", host="h1", metadata={"job": 1}).start()
        await wait_status(js, ns, key, Status.ACTIVE)
        rec = await status_of(js, ns, key)
        assert rec is not None and rec.host == "h1" and rec.interval == 0.5 and rec.metadata == {"job": 1}
        await pacer.stop()
        await wait_status(js, ns, key, Status.STALE)
        await wait_status(js, ns, key, Status.LOST)
        pacer.start()
        await wait_status(js, ns, key, Status.ACTIVE)
        await pacer.stop()

        async def three() -> list[AuditEvent]:
            events = await audit_events(js, ns, "stale", "lost", "recovered")
            return events if len(events) >= 3 else []

        events = await eventually(three, what="stale, lost and recovered events")
    assert [e.type for e in events] == [EventType.STALE, EventType.LOST, EventType.RECOVERED]
    assert all(e.agent_uri == URI and e.instance == "w1" for e in events)
    assert events[0].data["to"] == "stale" and events[2].data["from"] == "lost"


async def test_reported_statuses(conn: Connection, settings: Settings) -> None:
    js, ns = conn.js, conn.ns
    reported = [Status.PAUSED, Status.KILLED, Status.STOPPED, Status.CRASHED, Status.TERMINATED]
    async with running_controller(settings, fast_options()):
        for i, status in enumerate(reported):
            await send(conn.nc, ns, heartbeat(URI, f"r{i}", seq=1))
            await send(conn.nc, ns, heartbeat(URI, f"r{i}", seq=2, status=status))
        for i, status in enumerate(reported):
            await wait_status(js, ns, f"acme.prod.mailer.r{i}", status)
        # paused instances that go quiet are still swept; the ended ones are not
        await wait_status(js, ns, "acme.prod.mailer.r0", Status.STALE)
        for i, status in enumerate(reported[1:], start=1):
            rec = await status_of(js, ns, f"acme.prod.mailer.r{i}")
            assert rec is not None and rec.status is status
    assert await audit_events(js, ns, "lost", "recovered") == []


async def test_lifecycle_events_from_the_audit_stream(conn: Connection, settings: Settings) -> None:
    js, ns = conn.js, conn.ns
    cases = [
        (EventType.HALTED, {"status": "paused"}, Status.PAUSED),
        (EventType.HALTED, {"status": "killed"}, Status.KILLED),
        (EventType.STOPPED, {}, Status.STOPPED),
        (EventType.CRASHED, {}, Status.CRASHED),
        (EventType.TERMINATED, {}, Status.TERMINATED),
    ]
    async with running_controller(settings, fast_options()):
        for i in range(len(cases)):
            await send(conn.nc, ns, heartbeat(URI, f"l{i}", seq=1))
            await wait_status(js, ns, f"acme.prod.mailer.l{i}", Status.ACTIVE)
        for i, (kind, data, _) in enumerate(cases):
            await publish_event(js, ns, AuditEvent(type=kind, agent_uri=URI, instance=f"l{i}", data=data))
        for i, (_, _, status) in enumerate(cases):
            await wait_status(js, ns, f"acme.prod.mailer.l{i}", status)
    # an instance that stops while no controller runs is still learned about (durable consumer)
    await publish_event(js, ns, AuditEvent(type=EventType.STARTED, agent_uri=URI, instance="l0"))
    await publish_event(js, ns, AuditEvent(type=EventType.STOPPED, agent_uri=URI, instance="late"))
    async with running_controller(settings, fast_options()):
        await wait_status(js, ns, "acme.prod.mailer.late", Status.STOPPED)
        await wait_status(js, ns, "acme.prod.mailer.l0", Status.ACTIVE)


async def test_bad_heartbeats_are_counted_and_survived(conn: Connection, settings: Settings) -> None:
    js, ns = conn.js, conn.ns
    subject = f"{ns.prefix}.hb.acme.prod.mailer.b1"
    async with running_controller(settings, fast_options(max_heartbeat_bytes=4096)):
        await send(conn.nc, ns, heartbeat(URI, "b0"))
        await wait_status(js, ns, "acme.prod.mailer.b0", Status.ACTIVE)
        await conn.nc.publish(subject, b"{not json")
        await conn.nc.publish(subject, b"")
        await conn.nc.publish(subject, b'{"agent_uri": 7, "instance": "b1"}')
        await conn.nc.publish(subject, b"{}" + b" " * 8000)
        await conn.nc.publish(subject, heartbeat("agent://acme/prod/other", "b1").model_dump_json().encode())
        await conn.nc.publish(subject, heartbeat(URI, "b1", v=9).model_dump_json().encode())
        await conn.nc.publish(
            f"{ns.prefix}.hb.acme.prod.mailer", heartbeat(URI, "b1").model_dump_json().encode()
        )
        await send(conn.nc, ns, heartbeat(URI, "b2"))
        await wait_status(js, ns, "acme.prod.mailer.b2", Status.ACTIVE)

        async def bad() -> dict[str, int]:
            (stats,) = await srv_request(conn.nc, f"$SRV.STATS.{ns.controller_service}", ns.prefix)
            counts: dict[str, int] = stats["data"]["bad"]
            return counts if sum(counts.values()) >= 7 else {}

        counts = await eventually(bad, what="7 bad heartbeats counted")
    assert counts["malformed_json"] == 2
    assert counts["oversized"] == 1
    assert counts["subject_mismatch"] == 2  # other agent in the body; subject missing the instance
    assert counts["unknown_version"] == 1
    assert counts["invalid_fields"] == 1
    assert await status_of(js, ns, "acme.prod.mailer.b1") is None


async def test_many_heartbeats_coalesce_into_few_writes(conn: Connection, settings: Settings) -> None:
    js, ns = conn.js, conn.ns
    key = "acme.prod.mailer.c1"
    writes = 0

    async def count(_msg: object) -> None:
        nonlocal writes
        writes += 1

    flush_every = 0.05
    sub = await conn.nc.subscribe(f"$KV.{ns.instances_bucket}.{key}", cb=count)
    async with running_controller(settings, fast_options(refresh_every=1.0, lost_after=30.0)):
        started = time.monotonic()
        for seq in range(1, 2001):
            await send(conn.nc, ns, heartbeat(URI, "c1", seq=seq, interval=5.0, metadata={"step": seq}))
            if seq % 200 == 0:
                await asyncio.sleep(0)  # let the controller (same loop) read
        await wait_status(js, ns, key, Status.ACTIVE)

        async def latest() -> bool:
            rec = await status_of(js, ns, key)
            return rec is not None and rec.metadata == {"step": 2000}

        await eventually(latest, what="the last heartbeat's metadata to be written")
        # The bound scales with this machine's speed: at most one write per flush interval that
        # passed (plus the first), however many heartbeats arrived in each.
        intervals = math.ceil((time.monotonic() - started) / flush_every) + 1
    await sub.unsubscribe()
    assert 1 <= writes <= intervals, (writes, intervals)
    assert writes < 2000  # coalesced: fewer writes than heartbeats


async def test_records_expire_after_retention(conn: Connection, settings: Settings) -> None:
    js, ns = conn.js, conn.ns
    key = "acme.prod.mailer.x1"
    async with running_controller(settings, fast_options(lost_after=0.5, retention=1.5)):
        await send(conn.nc, ns, heartbeat(URI, "x1", interval=1.0))
        await wait_status(js, ns, key, Status.ACTIVE)

        async def gone() -> bool:
            return await status_of(js, ns, key) is None

        await eventually(gone, what="the record to expire")
    assert [e.type for e in await audit_events(js, ns)] == [EventType.LOST]


async def test_service_api(conn: Connection, settings: Settings) -> None:
    ns = conn.ns
    name = ns.controller_service
    async with running_controller(settings, fast_options()):
        await send(conn.nc, ns, heartbeat(URI, "s1", interval=30.0))
        await wait_status(conn.js, ns, "acme.prod.mailer.s1", Status.ACTIVE)
        (ping,) = await eventually(lambda: srv_request(conn.nc, "$SRV.PING", ns.prefix), what="ping")
        assert ping["type"] == "io.nats.micro.v1.ping_response" and ping["name"] == name
        (info,) = await srv_request(conn.nc, f"$SRV.INFO.{name}", ns.prefix)
        assert info["type"] == "io.nats.micro.v1.info_response" and info["endpoints"]
        (by_id,) = await srv_request(conn.nc, f"$SRV.PING.{name}.{ping['id']}", ns.prefix)
        assert by_id["id"] == ping["id"]

        async def stats() -> dict[str, object] | None:
            (body,) = await srv_request(conn.nc, f"$SRV.STATS.{name}", ns.prefix)
            data: dict[str, object] = body["data"]
            return data if data["role"] == "active" and data["instances"] else None

        data = await eventually(stats, what="stats of the active controller")
        assert data["instances"] == {**{s.value: 0 for s in Status}, "active": 1}
        assert data["lease_holder"] == data["holder"]
        assert {"heartbeats_per_s", "bad", "dropped", "heartbeats"} <= set(data)
        status = await conn.nc.request(f"{ns.prefix}.controller.status", b"", timeout=5)
        assert b'"role": "active"' in status.data

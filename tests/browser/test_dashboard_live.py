"""The dashboard's live feed without a browser: it recovers when the server drops its consumers
(nats.py #510: ordered consumers are not recreated) and when the server restarts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from controller.dashboard.live import FleetFeed
from mesh.protocol.codec import encode
from mesh.protocol.models import AuditEvent, EventType, InstanceStatus, Status
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection
from mesh.transport.provision import provision
from mesh.transport.server import EmbeddedServer
from tests.waiting import HANG

pytestmark = pytest.mark.timeout(60)


async def eventually(check: Callable[[], Any], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def put_status(conn: Connection, instance: str, status: Status = Status.ACTIVE) -> None:
    now = datetime.now(UTC)
    record = InstanceStatus(
        agent_uri="agent://acme/prod/mailer",
        instance=instance,
        status=status,
        first_seen=now,
        last_seen=now,
        last_change=now,
        usage={"tokens": 12.0},
    )
    kv = await conn.js.key_value(conn.ns.instances_bucket)
    await kv.put(f"acme.prod.mailer.{instance}", encode(record))


async def put_audit(conn: Connection, reason: str) -> None:
    event = AuditEvent(type=EventType.KILL, target="agent://acme/prod/mailer", actor="t", reason=reason)
    await conn.js.publish(f"{conn.ns.prefix}.audit.acme.prod.mailer._.kill", encode(event))


async def drop_consumers(conn: Connection) -> int:
    """What a server restart or a lost ephemeral consumer does to the feed: delete its consumers."""
    dropped = 0
    for stream in (f"KV_{conn.ns.instances_bucket}", conn.ns.audit_stream):
        for info in await conn.js.consumers_info(stream):
            await conn.js.delete_consumer(stream, info.name)
            dropped += 1
    return dropped


async def _with_feed(settings: Settings, body: Callable[[Connection, FleetFeed], Awaitable[None]]) -> None:
    async with Connection(settings, name="test-setup") as admin:
        await provision(admin.js, admin.ns)
        await put_status(admin, "a")
        feed_holder: list[FleetFeed] = []

        async def on_reconnect() -> None:
            await feed_holder[0].on_reconnect()

        async with Connection(settings, name="test-feed", on_reconnect=on_reconnect) as conn:
            feed = FleetFeed(conn, audit_backlog=50, health_interval=0.5)
            feed_holder.append(feed)
            feed.start()
            try:
                await body(admin, feed)
            finally:
                await feed.stop()


async def test_feed_pushes_updates_and_recovers_when_its_consumers_vanish(settings: Settings) -> None:
    async def body(admin: Connection, feed: FleetFeed) -> None:
        sub = feed.subscribe()
        await eventually(lambda: "acme.prod.mailer.a" in feed.instances, "the initial snapshot")
        await put_audit(admin, "first")
        await eventually(lambda: any(e["reason"] == "first" for e in feed.audit), "the first audit event")

        assert await drop_consumers(admin) >= 2
        await eventually(lambda: feed.restarts["instances"] and feed.restarts["audit"], "restarts")
        await put_status(admin, "b", Status.PAUSED)
        await put_audit(admin, "second")
        await eventually(lambda: "acme.prod.mailer.b" in feed.instances, "an update after the restart")
        await eventually(lambda: any(e["reason"] == "second" for e in feed.audit), "audit after the restart")
        assert [e["reason"] for e in feed.audit].count("first") == 1  # resumed after, not replayed
        assert feed.instances["acme.prod.mailer.b"]["usage"] == {"tokens": 12.0}

        frames = []
        while not sub.queue.empty():
            frames.append(sub.queue.get_nowait())
        # After a restart, B comes either with the fresh snapshot or as an update.
        assert any(f and '"instance":"b"' in f for f in frames)
        assert any(f and f.startswith("event: audit\n") and "second" in f for f in frames)

        kv = await admin.js.key_value(admin.ns.instances_bucket)
        await kv.delete("acme.prod.mailer.a")
        await eventually(lambda: "acme.prod.mailer.a" not in feed.instances, "a deleted key to disappear")
        feed.close_streams()
        assert sub.closed
        # what was queued before the close still comes out, and then the end (None), not silence
        while (frame := await sub.next(HANG)) is not None:
            assert frame != "", "the stream went silent instead of ending"

    await _with_feed(settings, body)


@pytest.mark.chaos
async def test_feed_survives_a_server_restart(own_server: EmbeddedServer, prefix: str) -> None:
    settings = Settings(nats_url=own_server.url, prefix=prefix, actor="tester", connect_timeout=3.0)

    async def body(admin: Connection, feed: FleetFeed) -> None:
        await eventually(lambda: "acme.prod.mailer.a" in feed.instances, "the initial snapshot")
        await asyncio.to_thread(own_server.restart, hard=True)
        await eventually(lambda: admin.is_connected and feed.conn.is_connected, "both clients to reconnect")
        await put_status(admin, "c")
        await put_audit(admin, "after restart")
        await eventually(lambda: "acme.prod.mailer.c" in feed.instances, "an update after the restart")
        await eventually(lambda: any(e["reason"] == "after restart" for e in feed.audit), "audit after it")

    await _with_feed(settings, body)

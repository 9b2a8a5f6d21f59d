"""Writes while a stream has no leader (a 503: a cluster re-elects for 4-9 s after a node died) are
retried until stored, within their bound. The campaign's cluster run (seed 2) found kills and
resumes in force but missing from the audit log (``publish_event`` gave up on the first 503), and
a policy write reported as "bucket does not exist, run mesh init" during an election."""

from __future__ import annotations

import asyncio

import pytest
from nats.js.api import StreamConfig

from mesh.errors import MeshError, NotProvisioned
from mesh.protocol.models import AuditEvent, EventType
from mesh.runtime.settings import Settings
from mesh.transport.audit import publish_event
from mesh.transport.connection import Connection
from mesh.transport.kvscan import put_key
from mesh.transport.provision import ProvisionOptions, audit_stream_config


async def test_an_event_waits_out_a_stream_without_leader(settings: Settings) -> None:
    async with Connection(settings, name="test-audit-503") as conn:
        event = AuditEvent(type=EventType.KILL, target="agent://acme/prod/mailer", actor="op")

        async def stream_appears() -> None:  # as a new leader would, a moment later
            # sleep-ok: how long the stream has no leader: the publish must retry through it
            await asyncio.sleep(1.0)
            await conn.js.add_stream(audit_stream_config(conn.ns, ProvisionOptions()))

        creator = asyncio.create_task(stream_appears())
        ack = await publish_event(conn.js, conn.ns, event, timeout=2.0, attempts=3)
        await creator
        stored = await conn.js.get_msg(conn.ns.audit_stream, ack.seq)
        assert stored.headers is not None and stored.headers["Nats-Msg-Id"] == event.id


async def test_the_retry_is_bounded(settings: Settings) -> None:
    async with Connection(settings, name="test-audit-503") as conn:
        event = AuditEvent(type=EventType.KILL, target="agent://acme/prod/mailer", actor="op")
        with pytest.raises(MeshError, match="write audit events"):
            await publish_event(conn.js, conn.ns, event, timeout=1.0, attempts=1, unavailable_for=0.5)


async def test_a_kv_write_waits_out_a_stream_that_does_not_answer_yet(settings: Settings) -> None:
    """The bucket's stream exists but nothing answers on its subjects yet, as during an election."""
    async with Connection(settings, name="test-kv-503") as conn:
        bucket = f"{conn.ns.prefix}_nl"
        await conn.js.add_stream(StreamConfig(name=f"KV_{bucket}", subjects=[f"$KV.{bucket}.none"]))
        try:

            async def answers() -> None:
                # sleep-ok: how long the stream does not answer: the write must retry through it
                await asyncio.sleep(1.0)
                await conn.js.update_stream(StreamConfig(name=f"KV_{bucket}", subjects=[f"$KV.{bucket}.>"]))

            fixer = asyncio.create_task(answers())
            revision = await put_key(conn, bucket, "k", b"v", timeout=5.0)
            await fixer
            assert (await conn.js.get_msg(f"KV_{bucket}", revision)).data == b"v"
        finally:
            await conn.js.delete_stream(f"KV_{bucket}")


async def test_a_kv_write_to_a_missing_bucket_still_says_so_at_once(settings: Settings) -> None:
    async with Connection(settings, name="test-kv-503") as conn:
        with pytest.raises(NotProvisioned):
            await put_key(conn, f"{conn.ns.prefix}_absent", "k", b"v", timeout=30.0)

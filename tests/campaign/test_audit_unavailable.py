"""An audit event written while the audit stream has no leader (503: a cluster re-electing after a
node died, 4-9 s) is retried until stored, not dropped: the campaign's cluster run found kills and
resumes in force but missing from the audit log, their ``publish_event`` failed on the first 503."""

from __future__ import annotations

import asyncio

import pytest

from mesh.audit import publish_event
from mesh.connection import Connection
from mesh.errors import MeshError
from mesh.models import AuditEvent, EventType
from mesh.provision import ProvisionOptions, audit_stream_config
from mesh.settings import Settings


async def test_an_event_waits_out_a_stream_without_leader(settings: Settings) -> None:
    async with Connection(settings, name="test-audit-503") as conn:
        event = AuditEvent(type=EventType.KILL, target="agent://acme/prod/mailer", actor="op")

        async def stream_appears() -> None:  # as a new leader would, a moment later
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

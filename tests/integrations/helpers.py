"""Shared by the integration tests: wait for an instance's halted acknowledgement of one kill."""

from __future__ import annotations

import asyncio
import time

from mesh.protocol.models import AuditEvent
from mesh.transport.connection import Connection
from tests.integration.sdk_helpers import DEADLINE, audit_events


async def wait_ack(conn: Connection, command_id: str, timeout: float = DEADLINE) -> AuditEvent:
    """The halted acknowledgement of ``command_id`` (polled from the audit stream, with a deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        acks = [e for e in await audit_events(conn, "halted") if e.command_id == command_id]
        if acks:
            assert len(acks) == 1, acks
            return acks[0]
        assert time.monotonic() < deadline, "no halted acknowledgement"
        await asyncio.sleep(0.02)

"""Rebuilding the fleet from the instances KV when a controller starts or takes over."""

from __future__ import annotations

import structlog

from controller.state import Fleet
from mesh.errors import MalformedMessage
from mesh.protocol.codec import decode
from mesh.protocol.models import InstanceStatus
from mesh.transport.connection import Connection
from mesh.transport.kvscan import scan_latest

__all__ = ["restore"]

log = structlog.get_logger("controller.restore")


async def restore(conn: Connection, fleet: Fleet) -> int:
    """Load every status record into ``fleet``; returns how many were loaded.

    One direct multi-get (values with their revisions), not ``kv.keys()`` plus a get per key:
    nats-py's ``keys()`` rides an ordered consumer that can come back short under load, and a
    controller that restores nothing never marks the silent instances lost.
    """
    entries = await scan_latest(conn, conn.ns.instances_bucket)
    loaded = 0
    for key, entry in entries.items():
        try:
            rec = decode(InstanceStatus, entry.value)
        except MalformedMessage as exc:
            log.warning("unreadable status record, skipped", key=key, error=str(exc))
            continue
        fleet.restore(key, rec, entry.revision)
        loaded += 1
    return loaded

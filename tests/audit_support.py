"""Helpers for the audit-chain tests: real chained history from many writers, and an admin's rewrite."""

from __future__ import annotations

import asyncio
import dataclasses
import json

from mesh.protocol.auditverify import StoredMessage
from mesh.protocol.models import AuditEvent, EventType
from mesh.runtime.settings import Settings
from mesh.transport.audit import publish_event
from mesh.transport.auditwalk import read_stored
from mesh.transport.connection import Connection
from mesh.transport.provision import ProvisionOptions, provision


def event(writer: int, n: int) -> AuditEvent:
    return AuditEvent(
        type=EventType.KILL,
        target=f"agent://acme/prod/w{writer}",
        actor=f"writer-{writer}",
        reason=f"writer {writer} event {n:03d}",
        data={"n": n},
    )


async def write_concurrently(settings: Settings, writers: int = 4, each: int = 6) -> int:
    """``writers`` connections (one chain each), all publishing at once: an interleaved stream."""
    conns = [await Connection.open(settings, name=f"audit-writer-{w}") for w in range(writers)]
    try:

        async def one(w: int) -> None:
            for n in range(each):
                await publish_event(conns[w].js, conns[w].ns, event(w, n))

        await asyncio.gather(*(one(w) for w in range(writers)))
    finally:
        for c in conns:
            await c.close()
    return writers * each


def link(msg: StoredMessage) -> tuple[str, int]:
    chain = json.loads(msg.data)["chain"]
    return chain["id"], chain["seq"]


def middle_of_a_chain(msgs: list[StoredMessage]) -> tuple[int, int]:
    """Indexes of an event with a successor in its chain, and of that successor."""
    for i, m in enumerate(msgs):
        cid, n = link(m)
        for j in range(i + 1, len(msgs)):
            if link(msgs[j]) == (cid, n + 1) and n >= 2:
                return i, j
    raise AssertionError("no chain with three events")


def edited(msg: StoredMessage, reason: str = "nothing happened here") -> StoredMessage:
    doc = json.loads(msg.data)
    doc["reason"] = reason
    return dataclasses.replace(msg, data=json.dumps(doc).encode())


async def recreate_stream(conn: Connection, history: list[StoredMessage]) -> None:
    """What an admin can do: delete the audit stream, create it again with the same config and
    republish a doctored history (new sequences, a fresh duplicate window)."""
    await conn.js.delete_stream(conn.ns.audit_stream)
    await provision(conn.js, conn.ns, ProvisionOptions())
    for m in history:
        await conn.js.publish(m.subject, m.data, headers=dict(m.headers) if m.headers else None)


async def stored(conn: Connection) -> list[StoredMessage]:
    info = await conn.js.stream_info(conn.ns.audit_stream)
    return await read_stored(conn, upto=info.state.last_seq)

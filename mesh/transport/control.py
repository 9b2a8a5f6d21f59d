"""Kill records in the control bucket: reading them and decoding their republished updates."""

from __future__ import annotations

from nats.aio.msg import Msg
from nats.js.kv import KeyValue

from mesh.errors import MalformedMessage
from mesh.protocol.codec import decode
from mesh.protocol.controlupdate import ControlUpdate, decode_record
from mesh.protocol.kvwire import is_delete
from mesh.protocol.models import KillRecord
from mesh.protocol.subjects import Namespace
from mesh.transport import kvops
from mesh.transport.connection import Connection
from mesh.transport.kvscan import read_latest

__all__ = [
    "parse_control_message",
    "read_records",
    "read_records_batched",
    "read_records_from_leader",
]


def parse_control_message(ns: Namespace, msg: Msg) -> ControlUpdate:
    """Decode a message republished from the control bucket to ``mesh.ctl.<key>``.

    Raises :class:`MalformedMessage` for anything that is not a republished KV write.
    """
    headers = msg.headers or {}
    try:
        key = ns.control_key_from_subject(msg.subject)
        revision = int(headers["Nats-Sequence"])
    except (KeyError, ValueError) as exc:
        raise MalformedMessage("control", "not a republished control-bucket write", len(msg.data)) from exc
    if is_delete(headers):
        return ControlUpdate(key, revision, None)
    return ControlUpdate(key, revision, decode(KillRecord, msg.data))


async def read_records_batched(conn: Connection, kv: KeyValue, keys: list[str]) -> list[ControlUpdate]:
    """:func:`read_records` in one round trip (a direct multi-get), same results.

    Falls back to one read per key if the server does not answer the multi-get as expected.
    """
    # A scoped identity may read only the keys that can match it, named in the request subject.
    latest = None if conn.scoped else await read_latest(conn, conn.ns.control_bucket, keys)
    if latest is None:
        return await read_records(kv, keys)
    out: list[ControlUpdate] = []
    for key in keys:
        entry = latest.get(key)
        if entry is None:
            out.append(ControlUpdate(key, 0, None))
        elif entry.value is None:
            out.append(ControlUpdate(key, entry.revision, None))
        else:
            out.append(ControlUpdate(key, entry.revision, decode_record(key, entry.value)))
    return out


async def read_records(kv: KeyValue, keys: list[str]) -> list[ControlUpdate]:
    """Current state of ``keys`` (missing keys come back with revision 0 and no record)."""
    out: list[ControlUpdate] = []
    for key in keys:
        entry = await kvops.get(kv, key, operation="read kill records")
        if entry is None or entry.value is None:
            out.append(ControlUpdate(key, entry.revision if entry is not None else 0, None))
        else:
            out.append(ControlUpdate(key, entry.revision, decode_record(key, entry.value)))
    return out


async def read_records_from_leader(conn: Connection, keys: list[str]) -> list[ControlUpdate]:
    """The state of ``keys`` as the control stream's leader has it (one request per key).

    Not a direct get, which any replica of a replicated bucket may answer from a lagging copy:
    ``$JS.API.STREAM.MSG.GET`` is answered by the leader, so this read is linearizable. A scoped
    identity may not use that API (its key is in the request body, so it could read any record):
    it gets nothing back, and a disputed kill stays in force until a newer clear arrives. Under
    identities only the server can push kill records, so a dispute there is a lagging replica.
    """
    bucket = conn.ns.control_bucket
    out: list[ControlUpdate] = []
    if conn.scoped:
        return out
    for key in keys:
        msg = await kvops.last_message(
            conn.js,
            f"KV_{bucket}",
            f"$KV.{bucket}.{key}",
            operation="read kill records from the leader",
            about=key,
        )
        if msg is None:
            out.append(ControlUpdate(key, 0, None))
            continue
        revision = int(msg.seq or 0)
        if is_delete(msg.headers) or not msg.data:
            out.append(ControlUpdate(key, revision, None))
        else:
            out.append(ControlUpdate(key, revision, decode_record(key, msg.data)))
    return out

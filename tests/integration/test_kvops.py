"""mesh.transport.kvops against a real nats-server: nats-py's outcomes said in mesh terms."""

from __future__ import annotations

import pytest

from mesh.errors import NotProvisioned, RevisionConflict
from mesh.protocol.models import AuditEvent, EventType
from mesh.protocol.target import parse_agent_uri
from mesh.transport import kvops
from mesh.transport.audit import publish_event
from mesh.transport.connection import Connection
from mesh.transport.natstypes import AckPolicy, ConsumerConfig, DeliverPolicy


async def test_get_tells_never_written_from_deleted(conn: Connection) -> None:
    kv = await kvops.open_bucket(conn.js, conn.ns.control_bucket)
    assert await kvops.get(kv, "never.written") is None
    written = await kvops.create(kv, "a.b.c", b"one")
    entry = await kvops.get(kv, "a.b.c")
    assert entry is not None and (entry.value, entry.revision) == (b"one", written)
    await kvops.delete(kv, "a.b.c")
    gone = await kvops.get(kv, "a.b.c")
    # A deleted key keeps its tombstone's revision: a compare-and-set must write over it.
    assert gone is not None and gone.value is None and gone.revision > written
    await kvops.delete(kv, "never.written")  # deleting what is not there is no error...
    marker = await kvops.get(kv, "never.written")
    assert marker is not None and marker.value is None  # ...but it leaves a delete marker


async def test_a_lost_compare_and_set_is_a_revision_conflict(conn: Connection) -> None:
    kv = await kvops.open_bucket(conn.js, conn.ns.control_bucket)
    first = await kvops.create(kv, "x.y.z", b"1")
    with pytest.raises(RevisionConflict, match="already holds a value") as held:
        await kvops.create(kv, "x.y.z", b"2")
    assert (held.value.key, held.value.expected) == ("x.y.z", 0)
    second = await kvops.update(kv, "x.y.z", b"2", first)
    with pytest.raises(RevisionConflict, match=f"no longer at revision {first}"):
        await kvops.update(kv, "x.y.z", b"3", first)
    entry = await kvops.get(kv, "x.y.z")
    assert entry is not None and (entry.value, entry.revision) == (b"2", second)


async def test_a_missing_bucket_is_not_provisioned(conn: Connection) -> None:
    with pytest.raises(NotProvisioned, match="bucket no_such_bucket"):
        await kvops.open_bucket(conn.js, "no_such_bucket")


async def test_last_message_is_none_when_there_is_none(conn: Connection) -> None:
    bucket = conn.ns.control_bucket
    kv = await kvops.open_bucket(conn.js, bucket)
    assert await kvops.last_message(conn.js, f"KV_{bucket}", f"$KV.{bucket}.k.l.m") is None
    revision = await kvops.create(kv, "k.l.m", b"v")
    for direct in (False, True):
        msg = await kvops.last_message(conn.js, f"KV_{bucket}", f"$KV.{bucket}.k.l.m", direct=direct)
        assert msg is not None and (msg.data, msg.seq) == (b"v", revision)


async def test_fetch_and_next_update_say_nothing_new_without_an_error(conn: Connection) -> None:
    stream = conn.ns.audit_stream
    config = ConsumerConfig(
        durable_name="kvops-test", ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.NEW
    )
    await conn.js.add_consumer(stream, config)
    psub = await conn.js.pull_subscribe_bind(durable="kvops-test", stream=stream)
    assert await kvops.fetch(psub, 10, timeout=0.2) == []
    uri = parse_agent_uri("agent://acme/prod/mailer")
    await publish_event(
        conn.js, conn.ns, AuditEvent(type=EventType.STARTED, agent_uri=str(uri), instance="i1")
    )
    msgs = await kvops.fetch(psub, 10, timeout=5.0)
    assert [m.subject for m in msgs] == [conn.ns.audit_subject("started", uri, "i1")]
    await psub.unsubscribe()

    kv = await kvops.open_bucket(conn.js, conn.ns.control_bucket)
    watcher = await kv.watchall()
    assert await kvops.next_update(watcher, 5.0) is None  # the marker: no initial values
    assert await kvops.next_update(watcher, 0.2) is kvops.NO_NEWS
    await kvops.create(kv, "w.a.t", b"ch")
    entry = await kvops.next_update(watcher, 5.0)
    assert (entry.key, entry.value) == ("w.a.t", b"ch")
    await watcher.stop()

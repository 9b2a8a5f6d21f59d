"""The protocol core against a real nats-server: connect, provisioning, republish, audit, restarts."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import nats
import pytest
from nats.aio.msg import Msg

from mesh.errors import (
    AuthenticationFailed,
    ConnectionFailed,
    MalformedMessage,
    PortInUse,
    ProvisioningConflict,
)
from mesh.protocol.codec import decode, encode
from mesh.protocol.models import AuditEvent, EventType, KillRecord
from mesh.runtime.settings import Settings
from mesh.transport.audit import publish_event
from mesh.transport.connection import Connection, jittered_reconnect
from mesh.transport.control import parse_control_message, read_records
from mesh.transport.provision import ProvisionOptions, provision
from mesh.transport.server import EmbeddedServer, port_in_use


@pytest.mark.timeout(60)  # a hang bound: nats-py alone would retry for minutes
async def test_connect_to_nothing_fails_fast_with_the_fix() -> None:
    with pytest.raises(ConnectionFailed) as info:
        await Connection.open(Settings(nats_url="nats://127.0.0.1:1", connect_timeout=1.0))
    assert "cannot reach NATS at nats://127.0.0.1:1" in str(info.value)
    assert "mesh up" in str(info.value)


async def test_wrong_credentials_are_named(tmp_path: Path) -> None:
    server = EmbeddedServer(tmp_path, port=0, extra_args=["--user", "alice", "--pass", "secret"]).start()
    try:
        bad = Settings(nats_url=server.url, user="alice", password="wrong", connect_timeout=3.0)
        with pytest.raises(AuthenticationFailed, match="refused the credentials"):
            await Connection.open(bad)
        good = await Connection.open(bad.model_copy(update={"password": "secret"}))
        assert good.is_connected
        await good.close()
    finally:
        server.stop()


async def test_null_state_before_connect_and_after_close(settings: Settings) -> None:
    conn = Connection(settings)
    with pytest.raises(ConnectionFailed, match="before connect"):
        await conn.nc.publish("x", b"")
    await conn.connect()
    assert conn.is_connected
    await conn.close()
    assert not conn.is_connected
    with pytest.raises(ConnectionFailed):
        _ = conn.js.publish
    await conn.close()  # closing twice is harmless


async def test_close_drains_queued_messages(settings: Settings) -> None:
    receiver = await nats.connect(settings.nats_url)
    got: list[bytes] = []

    async def cb(msg: Msg) -> None:
        got.append(msg.data)

    await receiver.subscribe("drain.test", cb=cb)
    await receiver.flush()
    sender = await Connection.open(settings)
    for i in range(500):
        await sender.nc.publish("drain.test", str(i).encode())
    await sender.close()
    deadline = time.monotonic() + 10
    while len(got) < 500 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    await receiver.close()
    assert len(got) == 500


def test_jittered_reconnect_spreads_and_prefers_least_tried() -> None:
    from urllib.parse import urlparse

    from nats.aio.client import Server

    a = Server(uri=urlparse("nats://a:1"), reconnects=3)
    b = Server(uri=urlparse("nats://b:1"), reconnects=0)
    delays = set()
    for _ in range(50):
        chosen, delay = jittered_reconnect([a, b], {})
        assert chosen is b
        assert 0.0 <= delay <= 0.25
        delays.add(round(delay, 6))
    assert len(delays) > 10
    _, delay = jittered_reconnect([a], {})
    assert delay <= 2.0


async def test_provisioning_is_idempotent_and_explicit(settings: Settings) -> None:
    async with Connection(settings) as conn:
        first = await provision(conn.js, conn.ns)
        assert set(first.created) == {
            conn.ns.control_bucket,
            conn.ns.instances_bucket,
            conn.ns.checkpoints_bucket,
            conn.ns.leases_bucket,
            conn.ns.policies_bucket,
            conn.ns.quota_bucket,
            conn.ns.gateway_keys_bucket,
            conn.ns.audit_stream,
        }
        second = await provision(conn.js, conn.ns)
        assert second.created == [] and len(second.existing) == 8
        audit = (await conn.js.stream_info(conn.ns.audit_stream)).config
        assert audit.deny_delete and audit.deny_purge
        assert audit.max_age == pytest.approx(90 * 86400)
        assert audit.duplicate_window == pytest.approx(120)
        assert str(getattr(audit.storage, "value", audit.storage)) == "file"
        control = (await conn.js.stream_info(f"KV_{conn.ns.control_bucket}")).config
        assert control.republish is not None
        assert control.republish.dest == conn.ns.control_republish_dest
        assert control.max_msgs_per_subject == 16


async def test_conflicting_config_is_reported_not_overwritten(settings: Settings) -> None:
    async with Connection(settings) as conn:
        await provision(conn.js, conn.ns)
        with pytest.raises(ProvisioningConflict) as info:
            await provision(conn.js, conn.ns, ProvisionOptions(audit_max_age=3600))
        assert "max_age" in info.value.differences
        still = (await conn.js.stream_info(conn.ns.audit_stream)).config
        assert still.max_age == pytest.approx(90 * 86400)


async def test_kill_record_republish_and_read_back(conn: Connection) -> None:
    ns = conn.ns
    kv = await conn.js.key_value(ns.control_bucket)
    updates: asyncio.Queue[Msg] = asyncio.Queue()

    async def cb(msg: Msg) -> None:
        updates.put_nowait(msg)

    await conn.nc.subscribe(ns.control_subject("acme._._"), cb=cb)
    await conn.nc.flush()
    record = KillRecord(target="agent://acme/*/*", actor="alice", reason="r")
    revision = await kv.put("acme._._", encode(record))

    update = parse_control_message(ns, await asyncio.wait_for(updates.get(), 5))
    assert (update.key, update.revision, update.record) == ("acme._._", revision, record)
    assert update.in_force

    [read] = await read_records(kv, ["acme._._"])
    assert read == update
    assert await kv.delete("acme._._")
    cleared = parse_control_message(ns, await asyncio.wait_for(updates.get(), 5))
    assert cleared.record is None and not cleared.in_force
    [after, missing] = await read_records(kv, ["acme._._", "never.was.set"])
    assert after.record is None and after.revision > revision
    assert missing.record is None and missing.revision == 0


async def test_malformed_control_messages(conn: Connection) -> None:
    msg = Msg(conn.nc, subject=conn.ns.control_subject("a.b.c"), data=b"{}", headers=None)
    with pytest.raises(MalformedMessage, match="not a republished"):
        parse_control_message(conn.ns, msg)
    msg = Msg(conn.nc, subject=conn.ns.control_subject("a.b.c"), data=b"junk", headers={"Nats-Sequence": "3"})
    with pytest.raises(MalformedMessage):
        parse_control_message(conn.ns, msg)


async def test_corrupt_stored_record_counts_as_in_force(conn: Connection) -> None:
    kv = await conn.js.key_value(conn.ns.control_bucket)
    await kv.put("a.b.c", b"not json")
    [update] = await read_records(kv, ["a.b.c"])
    assert update.in_force


async def test_audit_publish_dedupes_retries(conn: Connection) -> None:
    event = AuditEvent(type=EventType.KILL, target="agent://acme/*/*", actor="alice")
    first = await publish_event(conn.js, conn.ns, event)
    again = await publish_event(conn.js, conn.ns, event)
    assert again.duplicate and again.seq == first.seq
    info = await conn.js.stream_info(conn.ns.audit_stream)
    assert info.state.messages == 1
    stored = await conn.js.get_msg(conn.ns.audit_stream, first.seq)
    assert stored.subject == f"{conn.ns.prefix}.audit.acme._._._.kill"
    back = decode(AuditEvent, stored.data or b"")
    assert back.chain is not None and back.chain.seq == 1  # linked into the connection's audit chain
    assert back.model_copy(update={"chain": None}) == event


async def test_agent_events_go_under_their_uri(conn: Connection) -> None:
    event = AuditEvent(
        type=EventType.HALTED, agent_uri="agent://a/b/c", instance="i1", target="agent://a/*/*"
    )
    ack = await publish_event(conn.js, conn.ns, event)
    stored = await conn.js.get_msg(conn.ns.audit_stream, ack.seq)
    assert stored.subject == f"{conn.ns.prefix}.audit.a.b.c.i1.halted"


def test_busy_port_is_named(nats_server: EmbeddedServer, tmp_path: Path) -> None:
    assert port_in_use(nats_server.port)
    with pytest.raises(PortInUse) as info:
        EmbeddedServer(tmp_path, port=nats_server.port).start()
    assert str(nats_server.port) in str(info.value)


async def test_restart_keeps_port_and_store(own_server: EmbeddedServer, prefix: str) -> None:
    settings = Settings(nats_url=own_server.url, prefix=prefix)
    async with Connection(settings) as conn:
        await provision(conn.js, conn.ns)
        kv = await conn.js.key_value(conn.ns.checkpoints_bucket)
        await kv.put("a.b.c.i", b"state-1")
        event = AuditEvent(type=EventType.KILL, target="agent://a/b/c")
        await publish_event(conn.js, conn.ns, event)
    port = own_server.port
    own_server.restart(hard=True)
    assert own_server.port == port
    async with Connection(settings) as conn:
        kv = await conn.js.key_value(conn.ns.checkpoints_bucket)
        assert (await kv.get("a.b.c.i")).value == b"state-1"
        info = await conn.js.stream_info(conn.ns.audit_stream)
        assert info.state.messages == 1


async def test_connection_survives_server_restart(own_server: EmbeddedServer, prefix: str) -> None:
    reconnected = asyncio.Event()

    async def on_reconnect() -> None:
        reconnected.set()

    conn = await Connection.open(Settings(nats_url=own_server.url, prefix=prefix), on_reconnect=on_reconnect)
    try:
        await asyncio.to_thread(own_server.restart)
        await asyncio.wait_for(reconnected.wait(), 20)
        assert conn.is_connected
    finally:
        await conn.close()

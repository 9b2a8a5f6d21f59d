"""Pipelined JetStream publishes on a shared connection: each caller gets its own ack or its own error."""

from __future__ import annotations

import asyncio

import nats.errors
import nats.js.errors
import pytest

from agent_sdk import AsyncAgent
from mesh.protocol.codec import decode
from mesh.protocol.models import Checkpoint
from mesh.runtime.settings import Settings
from mesh.transport.ackpipe import pipelined_js
from mesh.transport.connection import Connection
from tests.integration.sdk_helpers import audit_events, await_until, put_kill

URI = "agent://acme/prod/fleet"


async def test_concurrent_publishes_each_get_the_ack_of_their_own_message(conn: Connection) -> None:
    js = pipelined_js(conn)
    stream = f"{conn.ns.prefix}_pipetest"
    await conn.js.add_stream(name=stream, subjects=[f"{conn.ns.prefix}.pipetest.>"])
    try:
        payloads = [f"m{i}".encode() for i in range(200)]
        acks = await asyncio.gather(
            *(js.publish(f"{conn.ns.prefix}.pipetest.{i % 7}", p) for i, p in enumerate(payloads))
        )
        assert len({a.seq for a in acks}) == len(payloads)
        for payload, ack in zip(payloads, acks, strict=True):
            assert ack.stream == stream
            stored = await conn.js.get_msg(stream, ack.seq)
            assert stored.data == payload
        assert js.pipe.in_flight == 0
        # An expectation the stream refuses comes back as that publish's own APIError.
        with pytest.raises(nats.js.errors.APIError):
            await js.publish(f"{conn.ns.prefix}.pipetest.x", b"x", stream="not-this-one")
    finally:
        await conn.js.delete_stream(stream)


async def test_a_publish_nobody_stores_fails_on_its_own_and_leaves_nothing_in_flight(
    conn: Connection,
) -> None:
    js = pipelined_js(conn)
    with pytest.raises(nats.js.errors.NoStreamResponseError):
        await js.publish(f"{conn.ns.prefix}.nostream.here", b"x", timeout=5)
    # A responder that never answers: that publish times out, the others are not held up.
    silent = await conn.nc.subscribe(f"{conn.ns.prefix}.silent")
    stream = f"{conn.ns.prefix}_pipetest2"
    await conn.js.add_stream(name=stream, subjects=[f"{conn.ns.prefix}.stored"])
    try:
        lost = asyncio.ensure_future(js.publish(f"{conn.ns.prefix}.silent", b"x", timeout=0.5))
        ok = await js.publish(f"{conn.ns.prefix}.stored", b"y")
        assert ok.stream == stream and not lost.done()
        with pytest.raises(nats.errors.TimeoutError):
            await lost
        assert js.pipe.in_flight == 0
    finally:
        await silent.unsubscribe()
        await conn.js.delete_stream(stream)


async def test_each_agent_of_a_shared_connection_acks_with_its_own_stored_checkpoint(
    conn: Connection, settings: Settings
) -> None:
    shared = await Connection.open(settings, name="fleet")
    try:
        agents = [
            AsyncAgent(URI, instance=f"c{i:02d}", connection=shared, hard_kill=False, on_kill="pause")
            for i in range(10)
        ]
        await asyncio.gather(*(a.start() for a in agents))
        for i, a in enumerate(agents):
            await a.checkpoint({"step": i})
        parked = [asyncio.create_task(a.sleep(60)) for a in agents]
        _, _, record = await put_kill(conn, URI)
        await await_until(lambda: all(a.status.value == "paused" for a in agents), what="all acked")
        halted = await audit_events(conn, "halted")
        acks = {e.instance: e for e in halted if e.command_id == record.command_id}
        kv = await conn.js.key_value(conn.ns.checkpoints_bucket)
        for i, a in enumerate(agents):
            name = f"c{i:02d}"
            assert (acks[name].data or {}).get("checkpoint") == {"step": i}
            stored = decode(Checkpoint, (await kv.get(a._core.key)).value or b"")
            assert stored.state == {"step": i} and stored.instance == name
        assert pipelined_js(shared).pipe.in_flight == 0
        for task in parked:
            task.cancel()
        await asyncio.gather(*parked, return_exceptions=True)
        await asyncio.gather(*(a.stop() for a in agents))
    finally:
        await shared.close()

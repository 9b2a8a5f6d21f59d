"""flush() after subscribe() means the server has the SUB: queued commands reach the socket before PING."""

from __future__ import annotations

from typing import Any

from mesh.transport.connection import Connection


async def test_flush_writes_a_new_subscription_before_its_ping(conn: Connection) -> None:
    transport: Any = conn.nc._transport
    wire: list[bytes] = []
    write, writelines = transport.write, transport.writelines
    transport.write = lambda data: (wire.append(bytes(data)), write(data))[1]
    transport.writelines = lambda chunks: (wire.extend(bytes(c) for c in chunks), writelines(chunks))[1]
    try:
        sub = await conn.nc.subscribe("probe.flush.order", cb=None)
        await conn.nc.flush()
    finally:
        transport.write, transport.writelines = write, writelines
    ops = [line.split(b" ")[0].strip() for line in wire]
    assert b"SUB" in ops and b"PING" in ops, wire
    assert ops.index(b"SUB") < ops.index(b"PING"), f"PING went ahead of the SUB: {wire}"
    await sub.unsubscribe()

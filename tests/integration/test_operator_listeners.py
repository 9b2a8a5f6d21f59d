"""Operator clients on a shared connection: nats-py left alone, no listener left behind, actor per call."""

from __future__ import annotations

from mesh.client.operator import AsyncMesh
from mesh.transport.connection import Connection


async def test_operator_clients_on_a_shared_connection_leave_no_listener_and_leave_nats_py_alone(
    conn: Connection,
) -> None:
    original = conn.nc._error_cb
    for _ in range(300):
        mesh = await AsyncMesh(connection=conn).connect()
        await mesh.close()
    # nats-py's own callback is untouched (it used to be wrapped once per client, never unwrapped),
    # and every client's error listener went with it.
    assert conn.nc._error_cb is original
    assert conn._error_listeners == []
    assert conn.is_connected  # closing a client never closes a connection it was lent


async def test_one_client_records_each_commands_own_actor(conn: Connection) -> None:
    mesh = await AsyncMesh(connection=conn).connect()
    try:
        first = await mesh.kill("agent://acme/prod/mailer", reason="r", wait=0, actor="dashboard:alice")
        second = await mesh.resume("agent://acme/prod/mailer", reason="r", wait=0, actor="dashboard:bob")
        kinds = {}
        async for event in mesh.events("agent://acme/prod/mailer"):
            kinds[event.type.value] = event.actor
            if len(kinds) == 2:
                break
    finally:
        await mesh.close()
    assert (first.actor, second.actor) == ("dashboard:alice", "dashboard:bob")
    assert kinds == {"kill": "dashboard:alice", "resume": "dashboard:bob"}

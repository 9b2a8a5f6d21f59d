"""AsyncAgent(connection=...): many instances on one NATS connection, each with its own state."""

from __future__ import annotations

import asyncio

import pytest

from agent_sdk import AgentKilled, AsyncAgent
from mesh.errors import ConfigError
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection
from tests.integration.sdk_helpers import audit_events, await_until, delete_kill, put_kill

URI = "agent://acme/prod/mailer"
OTHER = "agent://acme/prod/other"


async def test_agents_on_a_shared_connection_are_killed_and_resumed_independently(
    conn: Connection, settings: Settings
) -> None:
    shared = await Connection.open(settings, name="shared")
    try:
        a = await AsyncAgent(URI, instance="s1", connection=shared, hard_kill=False).start()
        b = await AsyncAgent(OTHER, instance="s2", connection=shared, hard_kill=False).start()
        await a.checkpoint({"step": 7})
        key, _, record = await put_kill(conn, URI)
        with pytest.raises(AgentKilled):
            await asyncio.wait_for(a.sleep(60), 30)
        assert not b.killed
        await b.heartbeat()  # not killed: passes
        acks = [e for e in await audit_events(conn, "halted") if e.command_id == record.command_id]
        assert [(e.instance, (e.data or {}).get("checkpoint")) for e in acks] == [("s1", {"step": 7})]
        await delete_kill(conn, key)
        assert await a.wait_resumed(30)
        # Stopping one agent leaves the shared connection, and the other agent, working.
        await a.stop()
        assert shared.is_connected
        _, _, other = await put_kill(conn, OTHER)
        with pytest.raises(AgentKilled):
            await asyncio.wait_for(b.sleep(60), 30)
        await await_until(lambda: b.status.value == "killed")
        await b.stop()
        assert shared.is_connected
        assert [e.type.value for e in await audit_events(conn, "stopped")] == ["stopped", "stopped"]
        assert other.command_id in {e.command_id for e in await audit_events(conn, "halted")}
    finally:
        await shared.close()


async def test_shared_connection_must_be_open_and_in_the_same_namespace(settings: Settings) -> None:
    closed = Connection(settings, name="never opened")
    with pytest.raises(ConfigError):
        await AsyncAgent(URI, instance="x1", connection=closed).start()
    elsewhere = settings.model_copy(update={"prefix": settings.prefix + "x"})
    with pytest.raises(ConfigError):
        AsyncAgent(URI, instance="x2", connection=closed, settings=elsewhere)

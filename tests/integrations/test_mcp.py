"""MCP client sessions under the kill switch, against an in-process MCP server (the mcp package's own)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer

from agent_sdk import AgentKilled, AsyncAgent
from agent_sdk.integrations.mcp import guard_session
from mesh.errors import ConfigError
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection
from tests.integration.sdk_helpers import delete_kill, put_kill
from tests.integrations.helpers import wait_ack

URI = "agent://acme/prod/mcp-user"


class Outbox:
    """The server's own log of what its tools did, with times; ``hold`` blocks one slow call."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, datetime]] = []
        self.slow_started = asyncio.Event()
        self.hold = True

    def names(self) -> list[str]:
        return [n for n, _ in self.sent]

    def after(self, when: datetime) -> list[str]:
        return [n for n, t in self.sent if t > when]


def build_server(box: Outbox) -> MCPServer:
    srv = MCPServer("mailer")

    @srv.tool()
    def send_email(to: str) -> str:
        """Send one email."""
        box.sent.append((to, datetime.now(UTC)))
        return f"sent to {to}"

    @srv.tool()
    async def slow_report() -> str:
        """Takes until the test lets it finish (the first time)."""
        box.slow_started.set()
        if box.hold:
            box.hold = False
            await asyncio.Event().wait()
        box.sent.append(("report", datetime.now(UTC)))
        return "report done"

    return srv


def _text(result: object) -> str:
    return result.content[0].text  # type: ignore[attr-defined, no-any-return]


@pytest.mark.parametrize("surface", ["client", "session"])
async def test_raise_refuses_every_call_after_the_ack_and_a_new_call_works_after_resume(
    conn: Connection, settings: Settings, surface: str
) -> None:
    box = Outbox()
    async with (
        AsyncAgent(URI, instance=f"m1{surface}", settings=settings, hard_kill=False) as mesh,
        Client(build_server(box)) as client,
    ):
        tools = guard_session(client if surface == "client" else client.session, mesh)
        assert _text(await tools.call_tool("send_email", {"to": "a@x"})) == "sent to a@x"
        key, _, record = await put_kill(conn, URI)

        async def keep_calling() -> None:  # the first call after the kill has landed is refused
            while True:
                await tools.call_tool("send_email", {"to": "b@x"})

        with pytest.raises(AgentKilled):
            await keep_calling()
        ack = await wait_ack(conn, record.command_id)
        assert ack.data["metadata"]["last_tool"] == "send_email"
        assert ack.data["metadata"]["tool_calls"] == len(box.sent)
        assert box.after(ack.time) == []
        await delete_kill(conn, key)
        assert await mesh.wait_resumed(30)
        assert (
            _text(await tools.call_tool("send_email", {"to": "c@x"})) == "sent to c@x"
        )  # the session still works


async def test_a_call_in_flight_is_cancelled_and_in_pause_mode_made_again_after_resume(
    conn: Connection, settings: Settings
) -> None:
    box = Outbox()
    async with (
        AsyncAgent(URI, instance="m2", settings=settings, hard_kill=False, on_kill="pause") as mesh,
        Client(build_server(box)) as client,
    ):
        session = guard_session(client.session, mesh)
        call = asyncio.create_task(session.call_tool("slow_report", {}))
        await asyncio.wait_for(box.slow_started.wait(), 30)
        key, _, record = await put_kill(conn, URI)
        ack = await wait_ack(conn, record.command_id)
        assert ack.data["status"] == "paused"
        assert ack.data["metadata"] == {
            "turn": 0,
            "last_tool": "slow_report",
            "tool_calls": 0,
            "at": "MCP tool slow_report",
        }
        assert not call.done() and box.names() == []
        await delete_kill(conn, key)
        assert _text(await asyncio.wait_for(call, 30)) == "report done"
        assert box.names() == ["report"]  # made again after resume, completed once


async def test_raise_cancels_a_call_in_flight(conn: Connection, settings: Settings) -> None:
    box = Outbox()
    async with (
        AsyncAgent(URI, instance="m3", settings=settings, hard_kill=False) as mesh,
        Client(build_server(box)) as client,
    ):
        session = guard_session(client, mesh)
        call = asyncio.create_task(session.call_tool("slow_report", {}))
        await asyncio.wait_for(box.slow_started.wait(), 30)
        _, _, record = await put_kill(conn, URI)
        with pytest.raises(AgentKilled):
            await asyncio.wait_for(call, 30)
        ack = await wait_ack(conn, record.command_id)
        assert ack.data["status"] == "killed" and box.names() == []


async def test_bad_input_gets_a_one_line_error(settings: Settings) -> None:
    async with AsyncAgent(URI, instance="m4", settings=settings, hard_kill=False) as mesh:
        with pytest.raises(ConfigError, match="takes an mcp ClientSession or Client, not dict"):
            guard_session({}, mesh)  # type: ignore[type-var]

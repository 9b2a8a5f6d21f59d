"""The MCP integration, bare and switched: ``call_tool`` on an in-process server."""

from __future__ import annotations

from typing import Any

from bench.frameworks.timing import added_work, end_to_end_row, interleaved
from bench.support.machine import package_version

__all__ = ["measure_mcp"]


async def measure_mcp(mesh: Any, runs: int, per_run: int, n: int) -> dict[str, Any]:
    from mcp import Client
    from mcp.server.mcpserver import MCPServer

    from agent_sdk.integrations.mcp import guard_session

    server = MCPServer("bench")

    @server.tool()
    def noop() -> str:
        """Nothing."""
        return "ok"

    async def noop_call(name: str, arguments: Any = None, *args: Any, **kwargs: Any) -> None:
        return None

    async with Client(server) as bare_client, Client(server) as guarded_client, Client(server) as hollow:
        guarded = guard_session(guarded_client.session, mesh)
        plain = bare_client.session

        async def bare() -> None:
            for _ in range(per_run):
                await plain.call_tool("noop", {})

        async def switched() -> None:
            for _ in range(per_run):
                await guarded.call_tool("noop", {})

        b, s = await interleaved(bare, switched, runs, per_run)
        # The wrapper alone: guard a session whose call_tool does nothing.
        object.__setattr__(hollow.session, "call_tool", noop_call)
        wrapped = guard_session(hollow.session, mesh)
        added = await added_work(
            "MCP",
            [
                (
                    "tool",
                    "call_tool: the guarded wrapper",
                    lambda: noop_call("noop", {}),
                    lambda: wrapped.call_tool("noop", {}),
                )
            ],
            n,
        )
    versions = {"mcp": package_version("mcp")}
    end_to_end = end_to_end_row("MCP (ClientSession.call_tool, in-process)", "tool call", b, s, versions)
    return {"end_to_end": end_to_end, "added": added, "versions": versions}

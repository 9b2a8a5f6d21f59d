"""MCP with a kill switch: every call_tool of the agent's MCP session is a guarded call."""

import asyncio
import os

from mcp import Client
from mcp.server.mcpserver import MCPServer

from agent_sdk import AgentKilled, AsyncAgent
from agent_sdk.integrations.mcp import guard_session

server = MCPServer("mailer")  # an in-process server, standing in for yours (a URL works the same)


@server.tool()
def send_email(n: int) -> str:
    """Send email number n."""
    print(f"sent email {n}", flush=True)
    return f"email {n} sent"


async def main() -> int:
    async with Client(server) as client:
        async with AsyncAgent("agent://acme/prod/mcp-mailer", instance="replica-1") as mesh:
            session = guard_session(client.session, mesh)
            try:
                for n in range(int(os.environ.get("STEPS", "1000000"))):
                    await session.call_tool("send_email", {"n": n})
                    await asyncio.sleep(float(os.environ.get("PACE", "0.05")))
            except AgentKilled as stop:  # caught here: the MCP client's task group would wrap it
                print(f"killed: {stop}", flush=True)
                return 3
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))

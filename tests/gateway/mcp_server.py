"""A real MCP server (the ``mcp`` package's MCPServer, streamable HTTP) on loopback, for the proxy tests."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import uvicorn
from mcp.server.mcpserver import MCPServer


@dataclass
class Mailer:
    """What the tools did, and when: a test checks nothing acted after a refusal."""

    sent: list[tuple[float, str]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    slow_started: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"


def build(mailer: Mailer) -> MCPServer:
    srv = MCPServer("mailer")

    @srv.tool()
    def send_email(to: str) -> str:
        """Send one email."""
        mailer.sent.append((time.monotonic(), to))
        return f"sent to {to}"

    @srv.tool()
    async def slow_report() -> str:
        """A tool that takes until the test releases it."""
        mailer.slow_started.set()
        await mailer.release.wait()
        mailer.sent.append((time.monotonic(), "report"))
        return "report done"

    @srv.resource("mail://outbox")
    def outbox() -> str:
        return "3 messages"

    @srv.prompt()
    def draft(topic: str) -> str:
        return f"Write about {topic}"

    return srv


@contextlib.asynccontextmanager
async def running_mcp() -> AsyncIterator[Mailer]:
    mailer = Mailer()
    app = build(mailer).streamable_http_app()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and not task.done(), "the MCP server did not start"
        await asyncio.sleep(0.01)
    mailer.port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield mailer
    finally:
        mailer.release.set()
        server.should_exit = True
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(task, 5)

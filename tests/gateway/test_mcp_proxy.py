"""A real MCP server behind /mcp/NAME and the mcp package's own client in front of the gateway."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

from gateway.config import Upstream
from mesh.client.operator import AsyncMesh
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection
from tests.gateway.conftest import AGENT, HeartbeatWatch, Running, eventually, gateway_config, start_gateway
from tests.gateway.mcp_server import Mailer, running_mcp
from tests.gateway.upstream import FakeUpstream

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def mailer() -> AsyncIterator[Mailer]:
    async with running_mcp() as m:
        yield m


@pytest.fixture
async def mcp_gateway(
    settings: Settings, conn: Connection, upstream: FakeUpstream, mailer: Mailer
) -> AsyncIterator[Running]:
    config = gateway_config(upstream)
    ups = {**config.upstreams, "mail": Upstream(name="mail", kind="mcp", base_url=mailer.url)}
    async with start_gateway(settings, conn, config.model_copy(update={"upstreams": ups})) as g:
        yield g


async def test_tools_pass_until_killed_then_list_passes_and_calls_are_refused(
    mcp_gateway: Running, mailer: Mailer, mesh: AsyncMesh, heartbeats: HeartbeatWatch
) -> None:
    key = await mcp_gateway.key()
    url = mcp_gateway.url + "/mcp/mail"
    async with create_mcp_http_client(headers={"Authorization": f"Bearer {key}"}) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                names = {t.name for t in (await session.list_tools()).tools}
                assert {"send_email", "slow_report"} <= names
                result = await session.call_tool("send_email", {"to": "a@example.com"})
                assert "sent to a@example.com" in str(result.content)
                assert "3 messages" in str(await session.read_resource("mail://outbox"))
                assert "Write about cats" in str(await session.get_prompt("draft", {"topic": "cats"}))

                await mesh.kill(AGENT, reason="mass mailing", wait=0)

                async def refused() -> MCPError | None:
                    try:
                        await session.call_tool("send_email", {"to": "b@example.com"})
                    except MCPError as exc:
                        return exc
                    return None

                exc = await eventually(refused)
                refused_at = time.monotonic()
                assert "mass mailing" in str(exc) and "tester" in str(exc)
                assert exc.error.data["target"] == AGENT
                with pytest.raises(MCPError):
                    await session.read_resource("mail://outbox")
                with pytest.raises(MCPError):
                    await session.get_prompt("draft", {"topic": "dogs"})
                # Discovery still passes.
                assert {t.name for t in (await session.list_tools()).tools} == names
    assert [t for t, _ in mailer.sent if t > refused_at] == []
    sent = [to for _, to in mailer.sent]
    # The instance's heartbeats carry its usage as of when each was sent: wait for one sent after
    # the calls above (an earlier one may count only the first).
    usage = await eventually(lambda: (u := heartbeats.usage()).get("mcp_calls", 0) >= 3 and u)
    assert usage["mcp_mail_send_email"] == sent.count("a@example.com") + sent.count("b@example.com")
    assert usage["mcp_calls"] >= 3


async def test_a_tool_call_in_flight_is_cut_by_the_kill(
    mcp_gateway: Running, mailer: Mailer, mesh: AsyncMesh
) -> None:
    key = await mcp_gateway.key()
    async with create_mcp_http_client(headers={"Authorization": f"Bearer {key}"}) as http:
        async with streamable_http_client(mcp_gateway.url + "/mcp/mail", http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                call = asyncio.ensure_future(session.call_tool("slow_report", {}))
                await asyncio.wait_for(mailer.slow_started.wait(), 20)
                await mesh.kill(AGENT, reason="cut the report", wait=0)
                with pytest.raises(MCPError) as info:
                    await asyncio.wait_for(call, 20)
                assert "cut the report" in str(info.value)


async def test_malformed_json_rpc_and_bad_keys(mcp_gateway: Running, mailer: Mailer) -> None:
    key = await mcp_gateway.key()
    url = mcp_gateway.url + "/mcp/mail"
    h = {"authorization": f"Bearer {key}", "accept": "application/json, text/event-stream"}
    async with httpx.AsyncClient() as c:
        resp = await c.post(url, content=b"{nope", headers=h)
        assert resp.status_code == 400 and resp.json()["error"]["code"] == -32700
        resp = await c.post(url, json={"method": "tools/call"}, headers=h)
        assert resp.status_code == 400 and resp.json()["error"]["code"] == -32600
        resp = await c.post(url, json=[], headers=h)
        assert resp.status_code == 400 and resp.json()["error"]["code"] == -32600
        bad = {**h, "authorization": "Bearer mk-unknown"}
        resp = await c.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"}, headers=bad)
        assert resp.status_code == 401 and resp.json()["jsonrpc"] == "2.0"
        resp = await c.post(mcp_gateway.url + "/mcp/nosuch", json={"jsonrpc": "2.0", "id": 1}, headers=h)
        assert resp.status_code == 404 and "nosuch" in resp.json()["error"]["message"]
    assert mailer.sent == []
    assert (await mcp_gateway.health()).json()["ok"]


async def test_mcp_upstream_down_is_a_json_rpc_error(
    settings: Settings, conn: Connection, upstream: FakeUpstream, resetter: int
) -> None:
    config = gateway_config(upstream)
    down = Upstream(name="down", kind="mcp", base_url=f"http://127.0.0.1:{resetter}/mcp")
    async with start_gateway(settings, conn, config.model_copy(update={"upstreams": {"down": down}})) as g:
        key = await g.key()
        h = {"authorization": f"Bearer {key}", "accept": "application/json, text/event-stream"}
        call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "x", "arguments": {}}}
        async with httpx.AsyncClient() as c:
            resp = await c.post(g.url + "/mcp/down", json=call, headers=h)
        assert resp.status_code == 502
        body = resp.json()
        assert body["jsonrpc"] == "2.0" and body["id"] == 7 and "down" in body["error"]["message"]
        assert (await g.health()).json()["ok"]

"""The MCP proxy: streamable-HTTP MCP servers behind ``/mcp/NAME``; a killed agent's tool calls refused.

``initialize``, ``tools/list`` and the other discovery methods always pass, so a killed agent
still sees what exists; ``tools/call``, ``resources/read`` and ``prompts/get`` of a killed agent
get a JSON-RPC error naming the kill record. Responses (JSON or SSE) are relayed as they come, and
a tool call whose SSE answer is still open when the kill lands ends with that error instead.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from gateway.config import Upstream
from gateway.context import Gateway
from gateway.errors import GatewayError, NoUpstream, Refused, UpstreamFailed
from gateway.formats import (
    JSONRPC_INVALID_REQUEST,
    JSONRPC_PARSE_ERROR,
    JSONRPC_REFUSED,
    jsonrpc_error,
    mesh_details,
)
from gateway.inbound import key_of, read_body
from gateway.keys import Identity
from gateway.relay import relay_chunks
from gateway.streams import LiveStream
from gateway.upstream import UpstreamResponse

__all__ = ["GUARDED", "mcp_routes", "tool_counter"]

log = structlog.get_logger("gateway.mcp")

#: The methods that act; everything else (initialize, */list, ping, notifications) passes.
GUARDED = frozenset({"tools/call", "resources/read", "prompts/get"})
_FORWARD = ("content-type", "accept", "mcp-session-id", "mcp-protocol-version", "last-event-id")
_BACK = ("content-type", "mcp-session-id", "mcp-protocol-version", "cache-control")
_COUNTER = re.compile(r"[^A-Za-z0-9_]")


def tool_counter(server: str, tool: str) -> str:
    """``mcp_SERVER_TOOL`` as a usage counter name (policies take [A-Za-z][A-Za-z0-9_]{0,63})."""
    return _COUNTER.sub("_", f"mcp_{server}_{tool}")[:64]


def _rpc_error(
    request_id: Any, exc: GatewayError, code: int = JSONRPC_REFUSED, status: int = 200
) -> Response:
    body = jsonrpc_error(request_id, code, str(exc), mesh_details(exc))
    return JSONResponse(body, status_code=status)


def _messages(raw: bytes) -> tuple[list[dict[str, Any]], bool] | str:
    """The JSON-RPC messages of a POST (a batch or one); a string says what is wrong."""
    try:
        data = json.loads(raw)
    except ValueError:
        return "parse error: the body is not JSON"
    batch = isinstance(data, list)
    items = data if batch else [data]
    if not items or not all(isinstance(m, dict) and m.get("jsonrpc") == "2.0" for m in items):
        return 'invalid request: expected JSON-RPC 2.0 message(s) ({"jsonrpc": "2.0", ...})'
    for m in items:
        if "method" in m and not isinstance(m["method"], str):
            return "invalid request: method must be a string"
    return items, batch


class MCPRoute:
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw

    def _upstream(self, name: str, ident: Identity) -> Upstream:
        up = self.gw.config.upstreams.get(name)
        if up is None or up.kind != "mcp":
            raise NoUpstream(f"no MCP server named {name!r} on this gateway")
        if ident.upstream is not None and ident.upstream != name:
            raise NoUpstream(f"key {ident.key_id} may only use upstream {ident.upstream!r}")
        return up

    async def handle(self, request: Request) -> Response:
        try:
            return await self._handle(request)
        except Exception:  # a bug must cost one request a JSON-RPC error, never the service
            log.exception("internal error", route=request.url.path)
            return _rpc_error(None, GatewayError("internal gateway error (see its log)"), -32603, 500)

    async def _handle(self, request: Request) -> Response:
        gw = self.gw
        name = request.path_params["name"]
        route = f"/mcp/{name}"
        try:
            ident = await gw.identify(key_of(request), request.headers.get("x-mesh-instance"))
            up = self._upstream(name, ident)
            raw = await read_body(request, gw.config.max_body_bytes) if request.method == "POST" else b""
        except GatewayError as exc:
            gw.rejected(exc)
            return _rpc_error(None, exc, JSONRPC_INVALID_REQUEST, exc.status)
        guarded: list[dict[str, Any]] = []
        if request.method == "POST":
            parsed = _messages(raw)
            if isinstance(parsed, str):
                code = JSONRPC_PARSE_ERROR if parsed.startswith("parse") else JSONRPC_INVALID_REQUEST
                gw.counters.rejected["jsonrpc_invalid"] = gw.counters.rejected.get("jsonrpc_invalid", 0) + 1
                return JSONResponse(jsonrpc_error(None, code, parsed), status_code=400)
            items, batch = parsed
            guarded = [m for m in items if m.get("method") in GUARDED and "id" in m]
            if guarded:
                try:
                    await gw.admit(ident, route)
                except Refused as exc:
                    errors = [
                        jsonrpc_error(m["id"], JSONRPC_REFUSED, str(exc), mesh_details(exc)) for m in guarded
                    ]
                    return JSONResponse(errors if batch else errors[0])
                except GatewayError as exc:
                    gw.rejected(exc)
                    return _rpc_error(
                        guarded[0]["id"] if len(guarded) == 1 else None, exc, JSONRPC_REFUSED, exc.status
                    )
                for m in guarded:
                    params = m.get("params")
                    tool = params.get("name") if isinstance(params, dict) else None
                    counters: dict[str, float] = {"mcp_calls": 1}
                    if m["method"] == "tools/call" and isinstance(tool, str):
                        counters[tool_counter(name, tool)] = 1
                    gw.meter.add(ident, counters)
        return await self._forward(request, up, ident, raw, guarded)

    async def _forward(
        self, request: Request, up: Upstream, ident: Identity, raw: bytes, guarded: list[dict[str, Any]]
    ) -> Response:
        gw = self.gw
        headers = {k: v for k in _FORWARD if (v := request.headers.get(k)) is not None}
        if up.api_key is not None:
            headers["authorization"] = f"Bearer {up.api_key.get_secret_value()}"
        client = gw.clients[up.name]
        try:
            resp = await client.open(request.method, up.base_url, headers, raw or None)
        except UpstreamFailed as exc:
            return self._failed(exc, guarded)
        gw.counters.proxied += 1
        back = {k: v for k in _BACK if (v := resp.headers.get(k)) is not None}
        if not resp.is_sse:
            try:
                body = await resp.read()
            except UpstreamFailed as exc:
                return self._failed(exc, guarded)
            finally:
                resp.close()
            return Response(body, status_code=resp.status, headers=back)
        live = gw.streams.open(ident) if guarded else None
        return StreamingResponse(self._relay(resp, live, guarded), status_code=resp.status, headers=back)

    def _failed(self, exc: UpstreamFailed, guarded: list[dict[str, Any]]) -> Response:
        self.gw.counters.upstream_errors += 1
        self.gw.rejected(exc)
        request_id = guarded[0]["id"] if len(guarded) == 1 else None
        return _rpc_error(request_id, exc, -32603, exc.status)

    async def _relay(
        self, resp: UpstreamResponse, live: LiveStream | None, guarded: list[dict[str, Any]]
    ) -> AsyncIterator[bytes]:
        try:
            try:
                async for chunk in relay_chunks(resp, live):
                    yield chunk
            except UpstreamFailed as exc:
                self.gw.counters.upstream_errors += 1
                for m in guarded:
                    err = jsonrpc_error(m["id"], -32603, str(exc), mesh_details(exc))
                    yield b"event: message\ndata: " + json.dumps(err).encode() + b"\n\n"
            if live is not None and live.cut is not None:
                self.gw.refused(live.ident, "/mcp", live.cut)
                for m in guarded:
                    err = jsonrpc_error(m["id"], JSONRPC_REFUSED, str(live.cut), mesh_details(live.cut))
                    yield b"event: message\ndata: " + json.dumps(err).encode() + b"\n\n"
        finally:
            resp.close()
            if live is not None:
                self.gw.streams.close(live)


def mcp_routes(gw: Gateway) -> list[Route]:
    return [Route("/mcp/{name}", MCPRoute(gw).handle, methods=["GET", "POST", "DELETE"])]

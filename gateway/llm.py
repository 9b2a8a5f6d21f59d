"""LLM routes (OpenAI-compatible, Anthropic): forwarded with the real credential; streams cut on kill."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from gateway.config import Upstream
from gateway.context import Gateway
from gateway.errors import BadRequest, GatewayError, Refused, UpstreamFailed
from gateway.formats import Protocol, error_body, sse_error_event
from gateway.inbound import key_of, read_body
from gateway.keys import Identity
from gateway.relay import relay_chunks
from gateway.streams import LiveStream
from gateway.upstream import UpstreamResponse
from gateway.usage import SSEUsage, usage_from_body

__all__ = ["llm_routes"]

log = structlog.get_logger("gateway.llm")

#: Request headers never forwarded: credentials (replaced by the real one), ours, hop-by-hop.
_DROP_REQUEST = frozenset(
    {
        "authorization",
        "x-api-key",
        "host",
        "content-length",
        "connection",
        "keep-alive",
        "proxy-authorization",
        "transfer-encoding",
        "te",
        "upgrade",
        "accept-encoding",
        "x-mesh-instance",
        "cookie",
    }
)


def _error(protocol: Protocol, exc: GatewayError) -> JSONResponse:
    return JSONResponse(error_body(protocol, exc), status_code=exc.status)


def _upstream_headers(request: Request, up: Upstream) -> dict[str, str]:
    headers = {k: v for k, v in request.headers.items() if k not in _DROP_REQUEST}
    headers["accept-encoding"] = "identity"  # so the bytes we meter are the bytes we pass on
    if up.api_key is not None:
        secret = up.api_key.get_secret_value()
        if up.kind == "anthropic":
            headers["x-api-key"] = secret
        else:
            headers["authorization"] = f"Bearer {secret}"
    return headers


def _parse_json(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError:
        raise BadRequest("the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("the request body must be a JSON object")
    return data


class LLMRoute:
    """One route: ``protocol`` picks the error format and the upstream kind."""

    def __init__(self, gw: Gateway, protocol: Protocol, suffix: str, *, body: bool = True) -> None:
        self.gw = gw
        self.protocol = protocol
        self.suffix = suffix
        self.body = body
        self.route = "/v1" + suffix
        # OpenAI base URLs end in /v1 already; Anthropic's do not.
        self.upstream_path = suffix if protocol == "openai" else "/v1" + suffix

    async def handle(self, request: Request) -> Response:
        try:
            return await self._handle(request)
        except Exception:  # a bug must cost one request a 500 in its own format, never the service
            log.exception("internal error", route=self.route)
            return _error(self.protocol, GatewayError("internal gateway error (see its log)"))

    async def _handle(self, request: Request) -> Response:
        gw = self.gw
        try:
            ident = await gw.identify(key_of(request), request.headers.get("x-mesh-instance"))
            await gw.admit(ident, self.route)
            up = gw.upstream_for(ident, self.protocol)
            raw = await read_body(request, gw.config.max_body_bytes) if self.body else b""
            data = _parse_json(raw) if self.body else {}
        except Refused as exc:
            return _error(self.protocol, exc)
        except GatewayError as exc:
            gw.rejected(exc)
            return _error(self.protocol, exc)
        stream = bool(data.get("stream"))
        # Streamed chat usage only comes when asked for: ask, unless the caller chose already.
        if stream and self.suffix == "/chat/completions" and "stream_options" not in data:
            data["stream_options"] = {"include_usage": True}
            raw = json.dumps(data).encode()
        url = up.base_url + self.upstream_path
        if request.url.query:
            url += "?" + request.url.query
        headers = _upstream_headers(request, up)
        client = gw.clients[up.name]
        try:
            resp = await client.open(request.method, url, headers, raw if self.body else None)
            if stream and resp.status < 400 and resp.is_sse:
                return self._stream(resp, ident)
            return await self._once(resp, ident)
        except GatewayError as exc:
            gw.counters.upstream_errors += 1
            gw.rejected(exc)
            return _error(self.protocol, exc)

    async def _once(self, resp: UpstreamResponse, ident: Identity) -> Response:
        try:
            body = await resp.read()
        finally:
            resp.close()
        self.gw.counters.proxied += 1
        if resp.status < 400 and self.body:
            u = usage_from_body(body)
            self.gw.meter_llm(ident, u.model, u.input_tokens, u.output_tokens, u.cached_input_tokens)
        return Response(body, status_code=resp.status, headers=resp.forward_headers)

    def _stream(self, resp: UpstreamResponse, ident: Identity) -> Response:
        self.gw.counters.proxied += 1
        live = self.gw.streams.open(ident)
        return StreamingResponse(
            self._relay(resp, live, ident), status_code=resp.status, headers=resp.forward_headers
        )

    async def _relay(self, resp: UpstreamResponse, live: LiveStream, ident: Identity) -> AsyncIterator[bytes]:
        """Chunk by chunk as the upstream sends them; a kill ends it with an error event at once."""
        meter = SSEUsage(self.protocol)
        try:
            try:
                async for chunk in relay_chunks(resp, live):
                    meter.feed(chunk)
                    yield chunk
            except UpstreamFailed as exc:
                self.gw.counters.upstream_errors += 1
                yield sse_error_event(self.protocol, exc)
            if live.cut is not None:
                self.gw.refused(ident, self.route, live.cut)
                log.info("stream cut by a kill", agent=ident.agent_uri, instance=ident.instance)
                yield sse_error_event(self.protocol, live.cut)
        finally:
            resp.close()
            self.gw.streams.close(live)
            u = meter.usage
            self.gw.meter_llm(ident, u.model, u.input_tokens, u.output_tokens, u.cached_input_tokens)


def llm_routes(gw: Gateway) -> list[Route]:
    return [
        Route("/v1/chat/completions", LLMRoute(gw, "openai", "/chat/completions").handle, methods=["POST"]),
        Route("/v1/responses", LLMRoute(gw, "openai", "/responses").handle, methods=["POST"]),
        Route("/v1/embeddings", LLMRoute(gw, "openai", "/embeddings").handle, methods=["POST"]),
        Route("/v1/models", LLMRoute(gw, "openai", "/models", body=False).handle, methods=["GET"]),
        Route("/v1/messages", LLMRoute(gw, "anthropic", "/messages").handle, methods=["POST"]),
    ]

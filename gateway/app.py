"""The gateway's ASGI app: the LLM and MCP routes, ``/healthz`` (kill state, counters) and ``/metrics``."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from gateway.context import Gateway
from gateway.llm import llm_routes
from gateway.mcp import mcp_routes
from gateway.metrics import metrics_route

__all__ = ["build_app"]


def build_app(gw: Gateway, extra: list[BaseRoute] | None = None) -> Starlette:
    async def healthz(_request: Request) -> JSONResponse:
        state = gw.tracker.health()
        c = gw.counters
        state.update(
            proxied=c.proxied,
            refused=c.refused,
            rejected=c.rejected,
            upstream_errors=c.upstream_errors,
            streams_open=len(gw.streams),
            egress_port=gw.egress_port,
            tunnels_open=gw.open_tunnels(),
            upstreams={name: up.kind for name, up in gw.config.upstreams.items()},
        )
        # 503 while refusing everything, so a load balancer or `mesh up` sees it too.
        return JSONResponse(state, status_code=200 if state["ok"] else 503)

    # ``extra`` (the HTTP API) first: its paths overlap none of the others, and its heartbeat
    # is the hottest route, so it should not be matched against every LLM route first.
    routes: list[BaseRoute] = [
        *(extra or []),
        Route("/healthz", healthz, methods=["GET"]),
        metrics_route(gw),
        *llm_routes(gw),
        *mcp_routes(gw),
    ]
    return Starlette(routes=routes)

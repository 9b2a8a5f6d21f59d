"""Running the gateway: connect, follow kills and keys, meter, serve HTTP until ``stop``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import structlog
import uvicorn

from gateway.acks import GatewayAcks
from gateway.api.context import Api, open_api
from gateway.api.routes import api_routes
from gateway.app import build_app
from gateway.config import GatewayConfig
from gateway.context import Gateway
from gateway.egress import EgressProxy
from gateway.errors import Refused
from gateway.keys import Identity
from gateway.keystore import AGENT_KEYS
from gateway.meter import Meter
from gateway.prices import load_prices
from gateway.tracker import KillTracker
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection

__all__ = ["running_gateway", "serve"]

log = structlog.get_logger("gateway")


@contextlib.asynccontextmanager
async def running_gateway(
    settings: Settings, config: GatewayConfig, *, meter_interval: float = 5.0
) -> AsyncIterator[tuple[Gateway, uvicorn.Server]]:
    """A started gateway and its HTTP server (already listening); stopped on exit."""
    prices = load_prices(config.prices)
    conn = await Connection.open(settings, name="mesh-gateway")
    tracker = KillTracker(conn, fail_closed_after=config.fail_closed_after)
    keys = AGENT_KEYS.cache(conn)
    meter = Meter(
        conn,
        interval=meter_interval,
        actor=settings.resolve_actor(),
        is_refused=lambda i: _refused(tracker, i),
    )
    gw = Gateway(config, tracker, keys, meter, prices)
    acks = GatewayAcks(conn, tracker, meter)
    server: uvicorn.Server | None = None
    task: asyncio.Task[None] | None = None
    egress: EgressProxy | None = None
    api: Api | None = None
    try:
        await keys.start()
        await tracker.start()
        await meter.start()
        if config.egress_port is not None:
            egress = EgressProxy(gw, connect_timeout=config.connect_timeout)
            gw.egress_port = await egress.start(config.host, config.egress_port)
            gw.open_tunnels = lambda: egress.open_tunnels if egress else 0
            log.info("egress proxy listening", host=config.host, port=gw.egress_port)
        if config.api.enabled:
            api = await open_api(gw, settings, config.api, conn)
        uv = uvicorn.Config(
            build_app(gw, api_routes(api) if api is not None else None),
            host=config.host,
            port=config.port,
            log_level="warning",
            access_log=False,  # never log request lines: query strings may carry secrets
            lifespan="off",
        )
        server = uvicorn.Server(uv)
        task = asyncio.create_task(server.serve(), name="gateway http")
        while not server.started:
            if task.done():
                task.result()  # the bind failed: raise it
                raise RuntimeError("gateway HTTP server ended before it started")
            await asyncio.sleep(0.01)
        log.info(
            "gateway listening", host=config.host, port=bound_port(server), upstreams=list(config.upstreams)
        )
        yield gw, server
    finally:
        if server is not None and task is not None:
            server.should_exit = True
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(task, 5.0)
        if egress is not None:
            await egress.stop()
        if api is not None:
            await api.stop()
        await acks.stop()
        await meter.stop()
        await tracker.stop()
        await keys.stop()
        await gw.aclose()
        await conn.close()


def _refused(tracker: KillTracker, ident: Identity) -> bool:
    try:
        tracker.check(ident.agent, ident.instance)
    except Refused:
        return True
    return False


def bound_port(server: uvicorn.Server) -> int:
    """The port actually bound (the config may ask for 0)."""
    for s in server.servers:
        for sock in s.sockets:
            return int(sock.getsockname()[1])
    return int(server.config.port)


async def serve(
    settings: Settings,
    config: GatewayConfig,
    *,
    stop: asyncio.Event,
    on_started: Callable[[int], None] | None = None,
) -> None:
    async with running_gateway(settings, config) as (_gw, server):
        if on_started is not None:
            on_started(bound_port(server))
        await stop.wait()

"""The Starlette application: the page, its static files, the SSE stream and the command endpoints.

=====================  ======  ====================================================================
``/``                  GET     the single page
``/static/*``          GET     its script and style sheet (no build step, no CDN)
``/api/config``        GET     read-only or writable, the default user, the NATS prefix
``/api/fleet``         GET     a snapshot: instances, counts per status, recent audit events
``/api/stream``        GET     server-sent events: snapshot, instance, removed, audit, nats
``/api/auth``          POST    204 when the operator token is right (the page checks it once)
``/api/kill``          POST    kill a target; returns the per-instance report (token required)
``/api/resume``        POST    resume a target; returns the per-instance report (token required)
``/healthz``           GET     the NATS connection and the two watch loops
=====================  ======  ====================================================================
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from controller.dashboard.auth import check_token, dashboard_actor
from controller.dashboard.commands import STOP_EVERYTHING, CommandRequest, Commands
from controller.dashboard.config import DashboardConfig
from controller.dashboard.live import FleetFeed, sse
from mesh.transport.connection import Connection

__all__ = ["create_app"]

log = structlog.get_logger("controller.dashboard.app")

STATIC = Path(__file__).with_name("static")
#: Seconds of silence after which the stream sends a comment, so proxies and browsers keep it open.
KEEPALIVE = 15.0
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]
LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "::1", "[::1]"]


class _SecurityHeaders:
    """Adds the headers above to every response (a plain ASGI middleware: it never buffers SSE)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    headers = {"WWW-Authenticate": 'Bearer realm="mesh-dashboard"'} if exc.status_code == 401 else None
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=headers)


def create_app(config: DashboardConfig, *, connection: Connection | None = None) -> Starlette:
    """The dashboard app. It opens its own NATS connection (``config.settings``) unless given one."""
    state: dict[str, Any] = {}

    def feed() -> FleetFeed:
        found: FleetFeed = state["feed"]
        return found

    def commands() -> Commands:
        found: Commands = state["commands"]
        return found

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        holder: dict[str, FleetFeed] = {}

        async def on_disconnect() -> None:
            if "feed" in holder:
                await holder["feed"].on_disconnect()

        async def on_reconnect() -> None:
            if "feed" in holder:
                await holder["feed"].on_reconnect()

        conn = connection or await Connection.open(
            config.settings, name="mesh-dashboard", on_disconnect=on_disconnect, on_reconnect=on_reconnect
        )
        live = FleetFeed(conn, audit_backlog=config.audit_backlog, health_interval=config.health_interval)
        holder["feed"] = live
        state.update(feed=live, commands=Commands(conn, wait=config.command_wait), conn=conn)
        app.state.feed = live
        live.start()
        log.info("dashboard started", prefix=conn.ns.prefix, writable=config.writable, bind=config.bind)
        try:
            yield
        finally:
            await live.stop()
            if connection is None:
                await conn.close()
            log.info("dashboard stopped")

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    async def api_config(request: Request) -> Response:
        conn: Connection = state["conn"]
        return JSONResponse(
            {
                "writable": config.writable,
                "user": config.user,
                "prefix": conn.ns.prefix,
                "stop_everything": STOP_EVERYTHING,
            }
        )

    async def fleet(request: Request) -> Response:
        return JSONResponse(feed().snapshot())

    async def stream(request: Request) -> Response:
        live = feed()
        sub = live.subscribe()  # before the snapshot, so that nothing falls between the two

        async def frames() -> AsyncIterator[str]:
            try:
                yield "retry: 2000\n\n"
                yield sse("snapshot", live.snapshot())
                while True:
                    frame = await sub.next(KEEPALIVE)
                    if frame is None:
                        return
                    yield frame or ": keepalive\n\n"
            finally:
                live.unsubscribe(sub)

        return StreamingResponse(
            frames(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def auth(request: Request) -> Response:
        check_token(request, config)
        return Response(status_code=204)

    def command(action: Literal["kill", "resume"]) -> Callable[[Request], Awaitable[Response]]:
        async def handler(request: Request) -> Response:
            check_token(request, config)
            if not request.headers.get("content-type", "").startswith("application/json"):
                raise HTTPException(415, "send JSON (Content-Type: application/json)")
            try:
                body = json.loads(await request.body())
            except ValueError as exc:
                raise HTTPException(400, "invalid JSON body") from exc
            parsed = CommandRequest.parse(body)
            actor = dashboard_actor(parsed.user, config)
            return JSONResponse(await commands().run(action, parsed, actor))

        return handler

    async def healthz(request: Request) -> Response:
        health = feed().health()
        ok = health["nats"] and health["instances_watch"] and health["audit_tail"]
        return JSONResponse(health, status_code=200 if ok else 503)

    middleware = [Middleware(_SecurityHeaders)]
    if config.loopback:
        # Refuses DNS-rebinding: a web page that resolves its own name to 127.0.0.1.
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=LOOPBACK_HOSTS))
    routes = [
        Route("/", index),
        Route("/api/config", api_config),
        Route("/api/fleet", fleet),
        Route("/api/stream", stream),
        Route("/api/auth", auth, methods=["POST"]),
        Route("/api/kill", command("kill"), methods=["POST"]),
        Route("/api/resume", command("resume"), methods=["POST"]),
        Route("/healthz", healthz),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={HTTPException: _error},
    )

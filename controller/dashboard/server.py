"""Running the dashboard: uvicorn on one event loop (no thread per browser), clean shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Generator

import structlog
import uvicorn

from controller.dashboard.app import create_app
from controller.dashboard.config import DashboardConfig
from mesh.errors import MeshError
from mesh.runtime.stopsignals import stop_on_signals
from mesh.transport.connection import Connection

__all__ = ["run_dashboard", "serve_dashboard"]

log = structlog.get_logger("controller.dashboard.server")


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: whoever runs it owns the ``stop`` event."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def run_dashboard(
    config: DashboardConfig,
    *,
    stop: asyncio.Event,
    on_started: Callable[[str], None] | None = None,
    connection: Connection | None = None,
) -> None:
    """Serve the dashboard until ``stop`` is set; ``on_started`` gets the page's URL once it listens.

    Shutdown ends every browser stream first, so that uvicorn's graceful wait is short.
    """
    sock = _listen(config.bind, config.port)
    app = create_app(config, connection=connection)
    server = _Server(
        uvicorn.Config(
            app,
            host=config.bind,
            port=config.port,
            loop="asyncio",
            http="h11",
            lifespan="on",
            log_config=None,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=3,
        )
    )
    serving = asyncio.create_task(server.serve(sockets=[sock]), name="dashboard-uvicorn")
    stopping = asyncio.create_task(stop.wait(), name="dashboard-stop")
    try:
        while not server.started and not serving.done() and not stop.is_set():
            await asyncio.wait({serving, stopping}, timeout=0.02)
        if serving.done():
            serving.result()
            raise MeshError("the dashboard's web server stopped while starting (see the log above)")
        if server.started:
            port = sock.getsockname()[1]
            host = f"[{config.bind}]" if ":" in config.bind else config.bind
            url = f"http://{host}:{port}/"
            log.info("dashboard listening", url=url, writable=config.writable)
            if on_started is not None:
                on_started(url)
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        feed = getattr(app.state, "feed", None)
        if feed is not None:
            feed.close_streams()
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await serving
        sock.close()


def _listen(bind: str, port: int) -> socket.socket:
    """Bind the listening socket here, so that a taken port is a clear error and not uvicorn's exit."""
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((bind, port))
    except OSError as exc:
        sock.close()
        raise MeshError(
            f"the dashboard cannot listen on {bind}:{port}: {exc.strerror or exc}: use another --port/--bind"
        ) from exc
    sock.listen(128)
    sock.setblocking(False)
    return sock


def serve_dashboard(config: DashboardConfig, *, on_started: Callable[[str], None] | None = None) -> None:
    """Blocking: run the dashboard until SIGINT or SIGTERM."""

    async def main() -> None:
        stop = asyncio.Event()
        stop_on_signals(stop)
        await run_dashboard(config, stop=stop, on_started=on_started)

    asyncio.run(main())

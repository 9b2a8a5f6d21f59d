"""``mesh up`` as a supervisor: nats-server, controller, dashboard, gateway kept running until a signal."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mesh.runtime.aio import raise_if_cancelling, stop_tasks
from mesh.runtime.logs import configure_logging
from mesh.runtime.restarts import CrashBudget, describe_exit
from mesh.runtime.stopsignals import stop_on_signals

if TYPE_CHECKING:
    from mesh.transport.server import EmbeddedServer

#: How often the supervisor looks at its nats-server child (it reaps it at the same time).
SERVER_POLL = 0.1
#: How long every part together may take to stop before the process exits regardless.
STOP_TIMEOUT = 10.0

Part = Callable[[], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class GatewayPart:
    """``mesh up --gateway``: its config file (else MESH_GATEWAY_CONFIG) and port."""

    config: Path | None = None
    port: int | None = None


def _say(message: str) -> None:
    print(f"mesh up: {message}", file=sys.stderr, flush=True)


class GaveUp(Exception):
    """A part crashed more often than the crash budget allows; ``mesh up`` exits non-zero."""


class _Supervisor:
    """Restarts what crashes, within one crash budget per part; gives up past it."""

    def __init__(self, server: EmbeddedServer, stop: asyncio.Event, *, limit: int, window: float) -> None:
        self.server = server
        self.stop = stop
        self.limit, self.window = limit, window
        self.failure: str | None = None

    def _give_up(self, reason: str) -> None:
        self.failure = reason
        _say(f"{reason}; giving up and stopping everything")
        self.stop.set()

    async def watch_server(self) -> None:
        budget = CrashBudget(self.limit, self.window)
        while not self.stop.is_set():
            proc = self.server.process
            code = proc.poll() if proc is not None else None  # poll() also reaps: no zombie
            if code is None:
                await asyncio.sleep(SERVER_POLL)
                continue
            # A terminal's Ctrl+C reaches nats-server and us at once: let our handler run first.
            await asyncio.sleep(SERVER_POLL)
            if self.stop.is_set():
                return
            tail = " | ".join(line.strip() for line in self.server.log_tail_lines(3))
            how = describe_exit(code)
            if not budget.crash(time.monotonic()):
                self._give_up(f"nats-server died ({how}) {budget.recent} times within {self.window:g}s")
                return
            _say(f"nats-server died ({how}); restarting it on port {self.server.port}. last log: {tail}")
            try:
                await asyncio.to_thread(self.server.restart_after_exit)
            except Exception as exc:
                self._give_up(f"nats-server could not be restarted: {exc}")
                return
            _say(f"nats-server restarted (pid {self.server.pid}); clients reconnect by themselves")

    async def keep(self, name: str, part: Part) -> None:
        """Run ``part`` until ``stop``; a crash is reported and the part started again."""
        budget = CrashBudget(self.limit, self.window)
        while not self.stop.is_set():
            try:
                await part()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                raise_if_cancelling()
                if self.stop.is_set():
                    return
                what = f"{type(exc).__name__}: {exc}"
                if not budget.crash(time.monotonic()):
                    self._give_up(
                        f"the {name} crashed {budget.recent} times within {self.window:g}s ({what})"
                    )
                    return
                _say(f"the {name} crashed ({what}); restarting it")
                await asyncio.sleep(min(5.0, 0.2 * 2 ** (budget.recent - 1)))
                continue
            if not self.stop.is_set():
                _say(f"the {name} ended by itself; restarting it")
                await asyncio.sleep(0.2)


async def _serve(
    server: EmbeddedServer,
    *,
    with_controller: bool,
    dashboard_port: int | None,
    limit: int,
    window: float,
    gateway: GatewayPart | None = None,
) -> str | None:
    """Run until a signal or a give-up; the give-up reason, if any."""
    from mesh.runtime.settings import Settings
    from mesh.transport.connection import Connection
    from mesh.transport.provision import provision

    stop = asyncio.Event()
    stop_on_signals(stop)

    url = server.url
    settings = Settings.from_env(nats_url=url)
    async with Connection(settings, name="mesh-up") as conn:
        await provision(conn.js, conn.ns)
    print(f"NATS is up: export NATS_URL={url}", flush=True)
    print(f"data: {server.data_dir}  (Ctrl+C stops everything)", flush=True)
    _say(
        "DEV ONLY: this NATS has NO AUTHENTICATION; anyone who reaches it can kill, resume and write "
        "anything. Production: nats-identity.conf (docs/security.md, 'Identities')"
    )
    supervisor = _Supervisor(server, stop, limit=limit, window=window)
    tasks = [asyncio.create_task(supervisor.watch_server(), name="nats-server")]
    if with_controller:
        from controller import serve

        async def controller() -> None:
            await serve(settings, stop=stop)

        tasks.append(asyncio.create_task(supervisor.keep("controller", controller), name="controller"))
    if dashboard_port is not None:
        from controller.dashboard.config import DashboardConfig
        from controller.dashboard.server import run_dashboard

        config = DashboardConfig.from_env(settings=settings, port=dashboard_port)
        mode = (
            "kill/resume with MESH_DASHBOARD_TOKEN"
            if config.writable
            else "read-only: set MESH_DASHBOARD_TOKEN"
        )

        def started(page: str) -> None:
            print(f"dashboard: {page}  ({mode})", flush=True)

        async def dashboard() -> None:
            await run_dashboard(config, stop=stop, on_started=started)

        tasks.append(asyncio.create_task(supervisor.keep("dashboard", dashboard), name="dashboard"))
    if gateway is not None:
        from gateway.config import load_config
        from gateway.service import serve as serve_gateway

        # Read now: a bad config stops `mesh up` at once rather than as a crash loop.
        gw_config = load_config(gateway.config, port=gateway.port)

        def gateway_started(port: int) -> None:
            print(f"gateway: http://{gw_config.host}:{port}", flush=True)

        async def run_gateway() -> None:
            await serve_gateway(settings, gw_config, stop=stop, on_started=gateway_started)

        tasks.append(asyncio.create_task(supervisor.keep("gateway", run_gateway), name="gateway"))
    await stop.wait()
    stuck = await _stop_everything(tasks)
    if stuck:
        # asyncio.run would wait for them without end; a task that ignores every cancel must not
        # keep a stopped supervisor alive, so the process ends here, its server stopped first.
        server.stop()
        _say(f"tasks did not stop: {', '.join(stuck)}; exiting anyway")
        os._exit(1)
    return supervisor.failure


async def _stop_everything(tasks: list[asyncio.Task[None]]) -> list[str]:
    """Let the parts see ``stop`` and end; then cancel, re-cancelling, whatever is left, bounded."""

    _, running = await asyncio.wait(tasks, timeout=STOP_TIMEOUT)
    me = asyncio.current_task()
    others = {t for t in asyncio.all_tasks() if t is not me}
    stuck = await stop_tasks(running | others, timeout=2.0)
    return sorted(t.get_name() for t in stuck)


def run_up(
    *,
    port: int,
    data_dir: Path,
    host: str,
    with_controller: bool,
    dashboard_port: int | None,
    crash_limit: int = 5,
    crash_window: float = 60.0,
    gateway: GatewayPart | None = None,
) -> None:
    """Start nats-server and the parts; keep them running; tear everything down on a signal."""
    import typer

    from mesh.transport.server import EmbeddedServer

    configure_logging()
    server = EmbeddedServer(data_dir, port=port, host=host)
    server.start()
    try:
        failure = asyncio.run(
            _serve(
                server,
                with_controller=with_controller,
                dashboard_port=dashboard_port,
                limit=crash_limit,
                window=crash_window,
                gateway=gateway,
            )
        )
    finally:
        server.stop()
        _say("stopped")
    if failure is not None:
        raise typer.Exit(1)

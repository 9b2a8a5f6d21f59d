"""Running the embedded server and controller in the foreground, stopping both on SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from mesh.logs import configure_logging


async def _serve(url: str, *, with_controller: bool, data_dir: Path, dashboard_port: int | None) -> None:
    from mesh.connection import Connection
    from mesh.provision import provision
    from mesh.settings import Settings

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    settings = Settings.from_env(nats_url=url)
    async with Connection(settings, name="mesh-up") as conn:
        await provision(conn.js, conn.ns)
    print(f"NATS is up: export NATS_URL={url}", flush=True)
    print(f"data: {data_dir}  (Ctrl+C stops everything)", flush=True)
    tasks = []
    if with_controller:
        from controller import serve

        tasks.append(asyncio.create_task(serve(settings, stop=stop), name="controller"))
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

        tasks.append(
            asyncio.create_task(run_dashboard(config, stop=stop, on_started=started), name="dashboard")
        )
    if not tasks:
        await stop.wait()
        return
    # If one part dies, stop the others rather than limping on half-up.
    await asyncio.wait([*tasks, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
    stop.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
            raise result


def run_up(
    *, port: int, data_dir: Path, host: str, with_controller: bool, dashboard_port: int | None
) -> None:
    """Start nats-server, provision the mesh, run the controller; tear both down on a signal."""
    from mesh.server import EmbeddedServer

    configure_logging()
    server = EmbeddedServer(data_dir, port=port, host=host)
    server.start()
    try:
        asyncio.run(
            _serve(
                server.url,
                with_controller=with_controller,
                data_dir=server.data_dir,
                dashboard_port=dashboard_port,
            )
        )
    finally:
        server.stop()
        print("mesh up: stopped", file=sys.stderr, flush=True)

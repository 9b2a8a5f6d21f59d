"""Running the embedded server and controller in the foreground, stopping both on SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from mesh.logs import configure_logging


async def _serve(url: str, *, with_controller: bool, data_dir: Path) -> None:
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
    what = "the server and the controller" if with_controller else "the server"
    print(f"NATS is up: export NATS_URL={url}", flush=True)
    print(f"data: {data_dir}  (Ctrl+C stops {what})", flush=True)
    if with_controller:
        from controller import serve

        await serve(settings, stop=stop)
    else:
        await stop.wait()


def run_up(*, port: int, data_dir: Path, host: str, with_controller: bool) -> None:
    """Start nats-server, provision the mesh, run the controller; tear both down on a signal."""
    from mesh.server import EmbeddedServer

    configure_logging()
    server = EmbeddedServer(data_dir, port=port, host=host)
    server.start()
    try:
        asyncio.run(_serve(server.url, with_controller=with_controller, data_dir=server.data_dir))
    finally:
        server.stop()
        print("mesh up: stopped", file=sys.stderr, flush=True)

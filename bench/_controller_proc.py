"""The controller in its own process, so the bench can read its RSS and CPU alone.

``python -m bench._controller_proc URL PREFIX [METRICS_PORT]`` runs ``controller.serve`` until
SIGTERM/SIGINT (or 15 minutes), printing ``ready`` once it is serving; with METRICS_PORT it also
serves Prometheus metrics there (``ControllerOptions.metrics_port``).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

from bench.common import bench_settings


async def run(url: str, prefix: str, metrics_port: int | None = None) -> None:
    from controller import ControllerOptions, serve

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    options = ControllerOptions(metrics_port=metrics_port)
    task = asyncio.create_task(serve(bench_settings(url, prefix), stop=stop, options=options))
    print("ready", flush=True)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(stop.wait()), 900)
    stop.set()
    await asyncio.wait_for(task, 30)


def main() -> None:
    url, prefix = sys.argv[1], sys.argv[2]
    asyncio.run(run(url, prefix, int(sys.argv[3]) if len(sys.argv) > 3 else None))


if __name__ == "__main__":
    main()

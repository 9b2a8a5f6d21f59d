"""``mesh controller``: run the controller in the foreground until SIGINT/SIGTERM."""

from __future__ import annotations

from typing import Annotated

import typer


def controller(
    lost_after: Annotated[float, typer.Option(help="Seconds of silence before an instance is lost.")] = 30.0,
    retention: Annotated[
        float, typer.Option(help="Seconds after which records of gone instances leave the status KV.")
    ] = 86400.0,
    lease_ttl: Annotated[float, typer.Option(help="Leader lease TTL in seconds (takeover time).")] = 10.0,
    refresh_every: Annotated[
        float, typer.Option(help="Write an instance's last_seen at most this often (seconds).")
    ] = 5.0,
    stale_intervals: Annotated[
        float, typer.Option(help="Missed heartbeat intervals before an instance is stale.")
    ] = 3.0,
    sweep_every: Annotated[float, typer.Option(help="Seconds between sweeps.")] = 1.0,
    metrics: Annotated[
        bool, typer.Option(help="Serve Prometheus metrics on http://HOST:PORT/metrics.")
    ] = True,
    metrics_port: Annotated[int, typer.Option(help="Port of the metrics endpoint.", min=0, max=65535)] = 9464,
    metrics_host: Annotated[
        str, typer.Option(help="Address of the metrics endpoint (0.0.0.0 for a Prometheus elsewhere).")
    ] = "127.0.0.1",
) -> None:
    """Run the controller (live status, stale/lost detection, audit) until Ctrl+C.

    Several may run against one NATS: one is active, the others stand by.

    Example: mesh controller --lost-after 30 --retention 86400 --metrics-port 9464
    """
    import asyncio

    from controller import ControllerOptions, serve
    from mesh.runtime.logs import configure_logging
    from mesh.runtime.settings import Settings
    from mesh.runtime.stopsignals import stop_on_signals

    configure_logging()
    settings = Settings.from_env()
    options = ControllerOptions(
        lost_after=lost_after,
        retention=retention,
        lease_ttl=lease_ttl,
        refresh_every=refresh_every,
        stale_intervals=stale_intervals,
        sweep_every=sweep_every,
        metrics_port=metrics_port if metrics else None,
        metrics_host=metrics_host,
    )

    async def main() -> None:
        stop = asyncio.Event()
        stop_on_signals(stop)
        await serve(settings, stop=stop, options=options)

    asyncio.run(main())


if __name__ == "__main__":
    typer.run(controller)

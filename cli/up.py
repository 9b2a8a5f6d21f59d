"""``mesh up``: the embedded nats-server and the controller in one foreground process."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def up(
    port: Annotated[int, typer.Option(help="Port for NATS clients.")] = 4222,
    data_dir: Annotated[
        Path, typer.Option(help="Where JetStream keeps its data (survives restarts).")
    ] = Path(".mesh"),
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    controller: Annotated[bool, typer.Option(help="Run the controller in this process too.")] = True,
    dashboard: Annotated[bool, typer.Option(help="Serve the web dashboard too (loopback only).")] = True,
    dashboard_port: Annotated[int, typer.Option(help="Port of the dashboard; 0 picks a free one.")] = 8600,
    gateway: Annotated[
        bool | None,
        typer.Option(help="Run the enforcing gateway too (default: on when MESH_GATEWAY_CONFIG is set)."),
    ] = None,
    gateway_config: Annotated[
        Path | None, typer.Option(help="The gateway's TOML config (else MESH_GATEWAY_CONFIG).")
    ] = None,
    gateway_port: Annotated[int | None, typer.Option(help="The gateway's port (default 8790).")] = None,
) -> None:
    """Run a nats-server with JetStream, the controller, the dashboard (and the gateway) until Ctrl+C.

    Example: mesh up --port 4222 --data-dir .mesh
    """
    import os

    from cli.runtime import GatewayPart, run_up

    if gateway is None:
        gateway = gateway_config is not None or bool(os.environ.get("MESH_GATEWAY_CONFIG"))
    run_up(
        gateway=GatewayPart(config=gateway_config, port=gateway_port) if gateway else None,
        port=port,
        data_dir=data_dir,
        host=host,
        with_controller=controller,
        dashboard_port=dashboard_port if dashboard else None,
    )

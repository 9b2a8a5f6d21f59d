"""``mesh dashboard``: the web dashboard (the fleet live, kill and resume buttons, the audit log)."""

from __future__ import annotations

from typing import Annotated

import typer


def dashboard(
    port: Annotated[int, typer.Option(help="Port to serve the page on.")] = 8600,
    bind: Annotated[
        str, typer.Option(help="Address to listen on. Loopback by default: anything else exposes the page.")
    ] = "127.0.0.1",
    user: Annotated[
        str | None,
        typer.Option(help="Dashboard user recorded as dashboard:<user> in the audit (MESH_DASHBOARD_USER)."),
    ] = None,
) -> None:
    """Serve the web dashboard until Ctrl+C.

    Kill and resume need an operator token: set MESH_DASHBOARD_TOKEN (at least 8 characters);
    without it the page is read-only. The dashboard connects to NATS with the usual NATS_*
    variables, so its NATS permissions apply too.

    Example: MESH_DASHBOARD_TOKEN=$(openssl rand -hex 16) mesh dashboard --port 8600
    """
    import dataclasses

    from controller.dashboard.config import DashboardConfig
    from controller.dashboard.server import serve_dashboard
    from mesh.runtime.logs import configure_logging

    configure_logging()
    config = DashboardConfig.from_env(port=port, bind=bind)
    if user:
        config = dataclasses.replace(config, user=user)
    mode = "kill/resume need the operator token" if config.writable else "read-only (no MESH_DASHBOARD_TOKEN)"
    exposed = "" if config.loopback else "  WARNING: not loopback, reachable from the network"

    def started(url: str) -> None:
        print(f"dashboard: {url}  ({mode}; Ctrl+C stops it){exposed}", flush=True)

    serve_dashboard(config, on_started=started)

"""The typer application behind ``mesh``; imports are lazy so that ``mesh --help`` stays fast."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from cli import audit_cmd, credentials_cmd, dashboard_cmd, gateway_cmd, init_cmd, ops, policy_cmd, views
from cli import demo as demo_cmd
from cli import up as up_cmd

app = typer.Typer(
    name="mesh",
    help=(
        "agent-mesh: a kill switch for fleets of AI agents, on NATS JetStream.\n\n"
        "Connects to NATS_URL (default nats://127.0.0.1:4222) under MESH_PREFIX (default mesh); "
        "NATS_USER/NATS_PASSWORD, NATS_TOKEN or NATS_CREDS authenticate; MESH_ACTOR names you "
        "in the audit log.\n\n"
        "Example:\n\n"
        "  mesh up                                    # NATS + controller, in the foreground\n\n"
        "  mesh kill agent://acme/prod/mailer --reason 'broken template'\n\n"
        "  mesh list\n\n"
        "  mesh resume agent://acme/prod/mailer\n\n"
        "  mesh demo                                  # the whole story in 30 seconds"
    ),
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.callback()
def _root(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks and debug logs (or set MESH_DEBUG=1).")
    ] = False,
) -> None:
    """agent-mesh: a kill switch for fleets of AI agents, on NATS JetStream."""


app.command("kill")(ops.kill)
app.command("resume")(ops.resume)
app.command("list")(views.list_)
app.command("events")(views.events)
app.command("status")(views.status)
app.command("init")(init_cmd.init)
app.command("up")(up_cmd.up)
app.command("demo")(demo_cmd.demo)
app.add_typer(policy_cmd.app, name="policy")
app.add_typer(audit_cmd.app, name="audit")
app.command("usage")(policy_cmd.usage)
app.command("dashboard")(dashboard_cmd.dashboard)
app.add_typer(gateway_cmd.app, name="gateway")
app.add_typer(credentials_cmd.app, name="credentials")
app.command("callout")(credentials_cmd.callout)


def _register_controller() -> None:
    """``mesh controller`` comes from cli/controller_cmd.py, owned by the controller package."""
    try:
        from cli.controller_cmd import controller
    except ModuleNotFoundError as exc:
        if exc.name != "cli.controller_cmd":
            raise
        return
    app.command("controller")(controller)


_register_controller()


#: Commands that run until a signal: one that arrived while they started stops them cleanly (exit 0).
SERVICES = frozenset({"up", "controller", "dashboard", "callout"})


def main() -> None:
    """Console entry point: mesh errors become one line on stderr and a non-zero exit."""
    from cli.errors import run_app
    from mesh.runtime import stopsignals

    command = next((a for a in sys.argv[1:] if not a.startswith("-")), "")
    if command not in SERVICES:
        # A one-shot command: Ctrl+C interrupts it as usual, and one during start-up cancels it.
        stopsignals.release()
        if stopsignals.requested():
            print("mesh: interrupted", file=sys.stderr)
            sys.exit(130)
    debug = "--debug" in sys.argv or bool(os.environ.get("MESH_DEBUG"))
    if debug:
        os.environ["MESH_DEBUG"] = "1"
    sys.exit(run_app(app, debug=debug))

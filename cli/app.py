"""The typer application behind ``mesh``; imports are lazy so that ``mesh --help`` stays fast."""

from __future__ import annotations

import os
import sys

import typer

from cli import up as up_cmd

app = typer.Typer(
    name="mesh",
    help=(
        "agent-mesh: a kill switch for fleets of AI agents, on NATS JetStream.\n\n"
        "Example:\n\n"
        "  mesh up                                    # NATS + controller, in the foreground\n\n"
        "  mesh kill agent://acme/prod/mailer --reason 'broken template'\n\n"
        "  mesh resume agent://acme/prod/mailer"
    ),
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.callback()
def _root() -> None:
    """agent-mesh: a kill switch for fleets of AI agents, on NATS JetStream."""


app.command("up")(up_cmd.up)


def main() -> None:
    """Console entry point: mesh errors become one line on stderr and a non-zero exit."""
    from cli.errors import run_app

    sys.exit(run_app(app, debug="--debug" in sys.argv or bool(os.environ.get("MESH_DEBUG"))))

"""``mesh demo``: the email-campaign story end to end, in a temporary directory, in under a minute."""

from __future__ import annotations

from typing import Annotated

import typer


def demo(
    instances: Annotated[
        int, typer.Option("--instances", min=1, max=8, help="How many agent processes.")
    ] = 3,
    kill_after: Annotated[
        float, typer.Option("--kill-after", min=1, help="Seconds of sending before the kill.")
    ] = 4.0,
    keep: Annotated[bool, typer.Option("--keep", help="Keep the temporary directory (logs, store).")] = False,
) -> None:
    """Run the kill/resume demo: NATS + controller + 3 email-campaign agents, kill, resume, verify.

    Exits non-zero if any check fails (every email sent exactly once, all halted, all resumed).
    On a slow or loaded machine, MESH_DEMO_PATIENCE=3 gives each of its checks 3 times as long.

    Example: mesh demo
    """
    from cli.demo_run import run_demo

    raise typer.Exit(run_demo(instances=instances, kill_after=kill_after, keep=keep))

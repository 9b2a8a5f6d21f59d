"""The agent-mesh controller: live fleet status, stale/lost detection, audit of transitions."""

from __future__ import annotations

import asyncio

from controller.options import ControllerOptions
from mesh.runtime.settings import Settings

__all__ = ["ControllerOptions", "serve"]


async def serve(settings: Settings, *, stop: asyncio.Event, options: ControllerOptions | None = None) -> None:
    """Run the controller until ``stop`` is set (active or standby, as the lease decides)."""
    from controller.runner import Controller

    await Controller(settings, options).run(stop)

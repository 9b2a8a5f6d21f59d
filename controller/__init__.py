"""The agent-mesh controller: live fleet status, stale/lost detection, audit of transitions."""

from __future__ import annotations

import asyncio

from mesh.settings import Settings

__all__ = ["serve"]


async def serve(settings: Settings, *, stop: asyncio.Event) -> None:
    """Run the controller until ``stop`` is set. (Placeholder until the controller lands.)"""
    await stop.wait()

"""Shared CLI plumbing: settings from the environment, quiet logging, running one operator call."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from mesh.client.operator import AsyncMesh

T = TypeVar("T")


def debug_enabled() -> bool:
    return bool(os.environ.get("MESH_DEBUG"))


def quiet_logging() -> None:
    """Operator commands log only errors (to stderr) unless --debug or MESH_LOG_LEVEL says otherwise."""
    from mesh.runtime.logs import configure_logging

    level = os.environ.get("MESH_LOG_LEVEL") or ("DEBUG" if debug_enabled() else "ERROR")
    configure_logging(level)


def with_mesh(fn: Callable[[AsyncMesh], Awaitable[T]]) -> T:
    """Connect with settings from the environment, run ``fn``, close (draining) and return its result."""
    from mesh.client.operator import AsyncMesh
    from mesh.runtime.settings import Settings

    quiet_logging()
    settings = Settings.from_env()

    async def main() -> T:
        async with AsyncMesh(settings, name="mesh-cli") as mesh:
            return await fn(mesh)

    return asyncio.run(main())

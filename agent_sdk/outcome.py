"""How an agent's ``with`` block ended, as the status it reports: stopped, killed or crashed."""

from __future__ import annotations

import asyncio

from mesh.errors import AgentKilled
from mesh.protocol.models import Status

__all__ = ["outcome_of"]

# Someone asked the process to stop (Ctrl+C, SIGTERM turned into SystemExit, asyncio.run's cancel on
# Ctrl+C, a generator closed): that is a stop, not a crash, so the operator sees `stopped`.
_STOPS = (KeyboardInterrupt, SystemExit, asyncio.CancelledError, GeneratorExit)


def outcome_of(exc: BaseException | None) -> Status:
    """The status an agent reports when its block ends with ``exc`` (None: it returned)."""
    if exc is None or isinstance(exc, _STOPS):
        return Status.STOPPED
    if isinstance(exc, AgentKilled):
        return Status.KILLED
    return Status.CRASHED

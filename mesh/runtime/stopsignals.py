"""SIGINT and SIGTERM as a request to stop, honoured even when they arrive before the loop runs."""

from __future__ import annotations

import asyncio
import signal
from types import FrameType

__all__ = ["SIGNALS", "hold", "release", "requested", "stop_on_signals"]

SIGNALS = (signal.SIGINT, signal.SIGTERM)

_requested = False


def _note(signum: int, frame: FrameType | None) -> None:
    global _requested
    _requested = True


def hold(*, already: bool = False) -> None:
    """From now on a stop signal is remembered instead of killing the process mid-start.

    ``already``: one arrived before this module could be imported (the console script held it).
    """
    global _requested
    _requested = _requested or already
    for sig in SIGNALS:
        signal.signal(sig, _note)


def requested() -> bool:
    """Whether a stop signal arrived while held (a process started and stopped at once)."""
    return _requested


def release() -> None:
    """Back to Python's defaults: Ctrl+C raises KeyboardInterrupt, SIGTERM ends the process."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def stop_on_signals(stop: asyncio.Event) -> None:
    """Set ``stop`` on SIGINT or SIGTERM from the running loop; at once if one came earlier."""
    loop = asyncio.get_running_loop()
    for sig in SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    if _requested:
        stop.set()

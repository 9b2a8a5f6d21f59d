"""The ``mesh`` console script: holds Ctrl+C and SIGTERM from its first instant, then runs the app."""

from __future__ import annotations

import signal
from types import FrameType

_early: list[int] = []


def _remember(signum: int, frame: FrameType | None) -> None:
    _early.append(signum)


def main() -> None:
    # Importing the app takes a few hundred milliseconds; a signal in that window must not end
    # the process with a traceback, or before a service could say it stopped.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _remember)
    from mesh.runtime import stopsignals

    stopsignals.hold(already=bool(_early))
    from cli.app import main as run

    run()

"""The periodic sweep: silent instances become stale, then lost; old records expire."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog

from controller.state import Fleet, Transition
from mesh.runtime.aio import raise_if_cancelling

__all__ = ["sweep_loop"]

log = structlog.get_logger("controller.sweep")


async def sweep_loop(
    fleet: Fleet,
    submit: Callable[[Transition], None],
    wake: asyncio.Event,
    *,
    every: float,
    warmup: float,
    clock: Callable[[], float] = time.time,
) -> None:
    """Sweep every ``every`` seconds, after ``warmup`` (time for live instances to be heard)."""
    await asyncio.sleep(warmup)
    while True:
        try:
            for t in fleet.sweep(clock()):
                submit(t)
            if fleet.expired:
                wake.set()
        except Exception as exc:  # a bug here must not stop detection for good
            raise_if_cancelling()
            log.exception("sweep failed", error=str(exc) or type(exc).__name__)
        await asyncio.sleep(every)

"""A Prometheus stand-in: scrapes the controller's ``/metrics`` on a schedule and times each scrape."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import aiohttp

from bench.support.stats import percentiles

__all__ = ["Scraper"]


class Scraper:
    """GETs ``/metrics`` every ``every`` seconds, as Prometheus would; keeps each scrape's duration."""

    def __init__(self, port: int, every: float) -> None:
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.every = every
        self.durations: list[float] = []
        self.failures = 0
        self.last_ingested: float | None = None
        self.last_bytes = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        async with aiohttp.ClientSession() as session:
            while True:
                t0 = time.perf_counter()
                try:
                    async with session.get(self.url, timeout=aiohttp.ClientTimeout(total=10)) as resp:
                        body = await resp.read()
                    self.durations.append(time.perf_counter() - t0)
                    self.last_bytes = len(body)
                    for line in body.decode().splitlines():
                        if line.startswith("mesh_controller_heartbeats_ingested_total "):
                            self.last_ingested = float(line.split()[1])
                except (aiohttp.ClientError, TimeoutError):
                    self.failures += 1
                await asyncio.sleep(max(0.0, self.every - (time.perf_counter() - t0)))

    def summary(self) -> dict[str, Any]:
        return {
            "scrapes": len(self.durations),
            "failures": self.failures,
            "scrape_ms": percentiles([d * 1000 for d in self.durations], 2) if self.durations else None,
            "body_bytes": self.last_bytes,
            "heartbeats_ingested_last_scrape": self.last_ingested,
        }

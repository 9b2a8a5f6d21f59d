"""Heartbeat publisher processes (:mod:`bench._hb_pub`): started, collected, and a counter settled."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from typing import Any

from bench.support.procs import Children, shares

__all__ = ["collect", "settle", "start_publishers"]


def start_publishers(
    kids: Children,
    url: str,
    prefix: str,
    instances: int,
    publishers: int,
    rate: float,
    seconds: float,
    interval: float = 2.0,
) -> list[subprocess.Popen[bytes]]:
    start_at = time.time() + 1.0 + 0.2 * publishers
    procs = []
    first = 0
    for count in shares(instances, publishers):
        procs.append(
            kids.spawn(
                "-m",
                "bench._hb_pub",
                url,
                prefix,
                "--first",
                str(first),
                "--count",
                str(count),
                "--rate",
                str(rate / publishers if rate > 0 else 0),
                "--duration",
                str(seconds),
                "--interval",
                str(interval),
                "--start-at",
                str(start_at),
                stdout=subprocess.PIPE,
            )
        )
        first += count
    return procs


def collect(procs: list[subprocess.Popen[bytes]], timeout: float) -> dict[str, Any]:
    published = 0
    seconds = 0.0
    for proc in procs:
        out, _ = proc.communicate(timeout=timeout)
        line = out.decode().strip().splitlines()[-1] if out.strip() else "{}"
        res = json.loads(line)
        published += int(res.get("published", 0))
        seconds = max(seconds, float(res.get("seconds", 0.0)))
    return {"published": published, "seconds": seconds}


async def settle(get_count: Any, target: int, timeout: float) -> tuple[int, float]:
    """Poll a counter until it reaches ``target`` or stops moving; (count, seconds waited)."""
    t0 = time.perf_counter()
    last, still = -1, 0
    count = 0
    while time.perf_counter() - t0 < timeout:
        count = await get_count()
        if count >= target:
            break
        still = still + 1 if count == last else 0
        if still >= 10:  # not moving for ~1 s: the rest is gone
            break
        last = count
        await asyncio.sleep(0.1)
    return count, time.perf_counter() - t0

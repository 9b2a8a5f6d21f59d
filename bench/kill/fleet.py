"""Fleet start-up: how many processes, starting them, and waiting until every instance is live."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from pathlib import Path
from typing import Any

from bench.common import request_json
from bench.support.procs import Children

__all__ = ["count_active", "default_processes", "spawn_fleet", "wait_active", "wait_ready"]


def default_processes(n: int, cores: int = 2) -> int:
    """Fleet processes for N instances: 1 for 1, then up to 4 per core, ~1,250 instances each at most."""
    if n <= 1:
        return 1
    return max(1, min(n, max(2 * cores, math.ceil(n / 1250)), 4 * cores))


def spawn_fleet(
    kids: Children,
    url: str,
    prefix: str,
    run_id: str,
    uri: str,
    counts: list[int],
    *,
    mode: str,
    guarded: bool,
    heartbeat_interval: float,
    agents_per_connection: int,
    log_dir: Path,
) -> list[int]:
    """One :mod:`bench._fleet` process per entry of ``counts`` (its instances); their pids."""
    pids: list[int] = []
    first = 0
    for p, count in enumerate(counts):
        pids.append(
            kids.spawn(
                "-m", "bench._fleet", url, prefix, run_id, str(p),
                "--uri", uri,
                "--first", str(first),
                "--count", str(count),
                "--mode", mode,
                "--heartbeat-interval", str(heartbeat_interval),
                "--agents-per-connection", str(agents_per_connection),
                *(["--guarded"] if guarded else []),
                log=log_dir / f"fleet{p}.log",
            ).pid
        )  # fmt: skip
        first += count
    return pids


async def wait_ready(nc: Any, run_id: str, procs_n: int, instances: int, log_dir: Path) -> int:
    """Until every instance started (connected, subscribed, read its records, reported started)."""
    deadline = time.monotonic() + 60 + instances * 0.05
    ready = 0
    statuses: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        statuses = []
        for p in range(procs_n):
            with contextlib.suppress(Exception):
                statuses.append(await request_json(nc, f"bench.fleet.{run_id}.{p}.status", 2.0))
        ready = sum(s["ready"] for s in statuses)
        if ready >= instances or any(s["failed"] for s in statuses):
            break
        await asyncio.sleep(0.25)
    if ready < instances:
        errors = [e for s in statuses for e in s.get("errors", [])]
        raise RuntimeError(f"only {ready}/{instances} instances started: {errors[:3]} (logs in {log_dir})")
    return ready


async def count_active(conn: Any, uri: str) -> int:
    """Instances under ``uri`` that the controller's instances KV holds as active."""
    from mesh.protocol.models import InstanceStatus
    from mesh.protocol.target import parse_target
    from mesh.transport.kvscan import scan_latest

    entries = await scan_latest(
        conn, conn.ns.instances_bucket, conn.ns.instance_key_filter(parse_target(uri))
    )
    active = 0
    for e in entries.values():
        with contextlib.suppress(Exception):
            if InstanceStatus.model_validate_json(e.value).status.value == "active":
                active += 1
    return active


async def wait_active(conn: Any, uri: str, n: int, timeout: float) -> tuple[int, float]:
    """Poll until ``n`` instances are active or ``timeout``; (active, seconds waited)."""
    t0 = time.perf_counter()
    count = 0
    while time.perf_counter() - t0 < timeout:
        with contextlib.suppress(Exception):
            count = await count_active(conn, uri)
        if count >= n:
            break
        await asyncio.sleep(0.1 if n < 1000 else 0.3)
    return count, time.perf_counter() - t0

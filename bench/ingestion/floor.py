"""The ingest floor: a bare nats-py subscriber process (:mod:`bench._raw_sub`) under the same publishers."""

from __future__ import annotations

import asyncio
import subprocess
import time
from typing import Any

import nats

from bench.common import request_json
from bench.ingestion.publishers import collect, settle, start_publishers
from bench.support.procs import Children

__all__ = ["raw_floor"]


async def raw_floor(
    url: str, prefix: str, instances: int, publishers: int, seconds: float, decode: bool
) -> dict[str, Any]:
    nc = await nats.connect(url, name="bench-ingest-floor")
    with Children() as kids:
        sub = kids.spawn(
            "-m", "bench._raw_sub", url, prefix, *(["--decode"] if decode else []), stdout=subprocess.PIPE
        )
        assert sub.stdout is not None
        await asyncio.get_running_loop().run_in_executor(None, sub.stdout.readline)
        subj = f"bench.rawsub.{prefix}.stats"
        before = (await request_json(nc, subj))["received"]
        procs = start_publishers(kids, url, prefix, instances, publishers, 0, seconds)
        t_start = time.perf_counter()
        pub = await asyncio.get_running_loop().run_in_executor(None, collect, procs, seconds + 60)

        async def count() -> int:
            return int((await request_json(nc, subj))["received"]) - before

        got, drain = await settle(count, pub["published"], 30)
        elapsed = time.perf_counter() - t_start - 1.0 - 0.2 * publishers
        stats = await request_json(nc, subj)
        await nc.request(f"bench.rawsub.{prefix}.stop", b"", timeout=5)
    await nc.close()
    return {
        "decode": decode,
        "published": pub["published"],
        "received": got,
        "dropped": pub["published"] - got,
        "publish_rate": round(pub["published"] / pub["seconds"], 1) if pub["seconds"] else None,
        "received_per_s": round(got / max(elapsed, pub["seconds"]), 1),
        "drain_s": round(drain, 3),
        "slow_consumer_events": stats.get("slow_consumer"),
    }

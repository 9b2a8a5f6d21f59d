"""A heartbeat publisher process for :mod:`bench.ingest`: raw Heartbeat JSON for simulated instances.

``python -m bench._hb_pub URL PREFIX --first 0 --count 5000 --rate 20000 --duration 5 --start-at T``
publishes, from wall-clock time ``T``, ``rate`` heartbeats/s (0: as fast as possible) round-robin over
instances ``first .. first+count-1`` of ``agent://bench/ingest/sim``, for ``duration`` seconds, then
prints one JSON line: how many it published and over how long. Bounded by ``duration``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import time

import nats

from mesh.protocol.models import Heartbeat

URI = "agent://bench/ingest/sim"
TICK = 0.01


def templates(prefix: str, first: int, count: int, interval: float) -> list[tuple[str, bytes, bytes]]:
    """Per instance: (subject, JSON before the seq number, JSON after it)."""
    host = socket.gethostname()
    out = []
    for i in range(first, first + count):
        inst = f"sim{i:06d}"
        hb = Heartbeat(
            agent_uri=URI,
            instance=inst,
            seq=0,
            interval=interval,
            host=host,
            pid=os.getpid(),
            sdk_version="bench",
            metadata={"sim": i},
        )
        raw = hb.model_dump_json().encode()
        head, tail = raw.split(b'"seq":0', 1)
        out.append((f"{prefix}.hb.bench.ingest.sim.{inst}", head + b'"seq":', tail))
    return out


async def run(args: argparse.Namespace) -> dict[str, float | int]:
    tpl = templates(args.prefix, args.first, args.count, args.interval)
    nc = await nats.connect(args.url, name="bench-hb-pub", pending_size=32 * 1024 * 1024)
    delay = args.start_at - time.time()
    if delay > 0:
        await asyncio.sleep(delay)
    published = 0
    seq = 1
    n = len(tpl)
    t0 = time.perf_counter()
    end = t0 + args.duration
    pub = nc.publish
    if args.rate <= 0:
        while time.perf_counter() < end:
            for _ in range(1000):
                subject, head, tail = tpl[published % n]
                await pub(subject, head + str(seq + published // n).encode() + tail)
                published += 1
            await nc.flush()
    else:
        tick = 0
        while True:
            tick += 1
            due = int(args.rate * TICK * tick)
            while published < due:
                subject, head, tail = tpl[published % n]
                await pub(subject, head + str(seq + published // n).encode() + tail)
                published += 1
            await nc.flush()
            now = time.perf_counter()
            target = t0 + tick * TICK
            if target >= end:
                break
            if target > now:
                await asyncio.sleep(target - now)
    elapsed = time.perf_counter() - t0
    await nc.flush()
    await nc.close()
    return {"published": published, "seconds": round(elapsed, 4), "first": args.first, "count": args.count}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("prefix")
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=0.0, help="heartbeats/s from this process; 0: flat out")
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument(
        "--interval", type=float, default=2.0, help="the heartbeat interval the instances claim"
    )
    parser.add_argument("--start-at", type=float, default=0.0)
    args = parser.parse_args()
    args.duration = min(args.duration, 600.0)
    result = asyncio.run(run(args))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()

"""The ingest floor: a bare nats-py callback subscriber on ``PREFIX.hb.>`` in its own process.

``python -m bench._raw_sub URL PREFIX [--decode]`` counts heartbeats (``--decode`` also parses each
with the Heartbeat model, the controller's unavoidable per-message cost) and answers
``bench.rawsub.PREFIX.stats`` with its counters, until ``bench.rawsub.PREFIX.stop`` or 15 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json

import nats
from nats.aio.msg import Msg

from mesh.protocol.models import Heartbeat


async def run(url: str, prefix: str, decode: bool) -> None:
    slow = 0

    async def error_cb(exc: Exception) -> None:
        nonlocal slow
        if "slow consumer" in str(exc).lower() or type(exc).__name__ == "SlowConsumerError":
            slow += 1

    nc = await nats.connect(url, name="bench-raw-sub", error_cb=error_cb)
    received = 0
    stop = asyncio.Event()

    if decode:

        async def on_hb(msg: Msg) -> None:
            nonlocal received
            Heartbeat.model_validate_json(msg.data)
            received += 1

    else:

        async def on_hb(msg: Msg) -> None:
            nonlocal received
            received += 1

    sub = await nc.subscribe(
        f"{prefix}.hb.>", cb=on_hb, pending_msgs_limit=1_000_000, pending_bytes_limit=512 * 1024 * 1024
    )

    async def on_stats(msg: Msg) -> None:
        await msg.respond(
            json.dumps({"received": received, "pending": sub.pending_msgs, "slow_consumer": slow}).encode()
        )

    async def on_stop(msg: Msg) -> None:
        await msg.respond(b"{}")
        stop.set()

    await nc.subscribe(f"bench.rawsub.{prefix}.stats", cb=on_stats)
    await nc.subscribe(f"bench.rawsub.{prefix}.stop", cb=on_stop)
    await nc.flush()
    print("ready", flush=True)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), 900)
    await nc.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("prefix")
    parser.add_argument("--decode", action="store_true")
    args = parser.parse_args()
    asyncio.run(run(args.url, args.prefix, args.decode))


if __name__ == "__main__":
    main()

"""The floor: what raw nats-py does on the same server in the same run.

- ``request_reply``: core request/reply round trip (responder on its own connection).
- ``kv_put_republish``: KV put -> the republished message arriving on another connection.
- ``kv_put_ack``: KV put with its JetStream ack.
- ``kill_ack_raw``: the kill path done by hand with no SDK: KV put -> republish -> the
  "instance" publishes an ack to a JetStream stream with ack -> the "operator" sees it.
- ``pubsub``: pub -> sub throughput at 100 B, one publisher connection and one subscriber.

Every other bench reports its figures as ratios to these. ``python -m bench.floor``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import nats
import nats.errors
from nats.aio.msg import Msg
from nats.js.api import KeyValueConfig, RePublish, StorageType, StreamConfig

from bench.common import bench_prefix, bench_server, standard_args
from bench.support.report import envelope, fmt_ms, fmt_rate, print_table, write_json
from bench.support.stats import percentiles

__all__ = ["measure_floor", "pubsub_throughput"]

WARMUP = 20


async def _arrived(event: asyncio.Event, i: int, timeout: float = 2.0) -> bool:
    """Wait for a republished message. Right after a bucket is created the first ones can go
    missing (the republish is not wired up yet): tolerated during warm-up only."""
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except TimeoutError:
        if i < WARMUP:
            return False
        raise
    return True


async def request_reply(url: str, n: int) -> list[float]:
    nc_srv = await nats.connect(url, name="bench-floor-responder")
    nc = await nats.connect(url, name="bench-floor-requester")
    subject = f"bench.rr.{bench_prefix()}"

    async def respond(msg: Msg) -> None:
        await msg.respond(b"ok")

    await nc_srv.subscribe(subject, cb=respond)
    await nc_srv.flush()
    out: list[float] = []
    try:
        for i in range(n + WARMUP):
            t0 = time.perf_counter()
            try:
                await nc.request(subject, b"ping", timeout=5)
            except nats.errors.NoRespondersError:
                if i >= WARMUP:
                    raise
                await asyncio.sleep(0.05)  # warm-up: the responder may not be visible yet
                continue
            if i >= WARMUP:
                out.append((time.perf_counter() - t0) * 1000)
    finally:
        await nc.close()
        await nc_srv.close()
    return out


async def _control_kv(js: Any, prefix: str, bucket: str) -> Any:
    """A KV bucket shaped like the control bucket: republished to ``PREFIX.ctl.>`` as it is written."""
    return await js.create_key_value(
        KeyValueConfig(
            bucket=bucket,
            history=1,
            storage=StorageType.FILE,
            republish=RePublish(src=f"$KV.{bucket}.>", dest=f"{prefix}.ctl.>"),
            direct=True,
        )
    )


async def kv_put(url: str, n: int) -> tuple[list[float], list[float]]:
    """(put -> ack, put -> republished message arriving elsewhere), both in ms."""
    prefix = bench_prefix()
    nc = await nats.connect(url, name="bench-floor-kv")
    nc_sub = await nats.connect(url, name="bench-floor-kv-sub")
    js = nc.jetstream()
    bucket = f"{prefix}_floor"
    kv = await _control_kv(js, prefix, bucket)
    got = asyncio.Event()

    async def on_msg(_msg: Msg) -> None:
        got.set()

    await nc_sub.subscribe(f"{prefix}.ctl.acme.prod.mailer", cb=on_msg)
    await nc_sub.flush()
    acks: list[float] = []
    repubs: list[float] = []
    try:
        for i in range(n + WARMUP):
            got.clear()
            t0 = time.perf_counter()
            await kv.put("acme.prod.mailer", b'{"target":"agent://acme/prod/mailer"}')
            t_ack = time.perf_counter()
            if not await _arrived(got, i):
                continue
            t_rep = time.perf_counter()
            if i >= WARMUP:
                acks.append((t_ack - t0) * 1000)
                repubs.append((t_rep - t0) * 1000)
    finally:
        await js.delete_key_value(bucket)
        await nc.close()
        await nc_sub.close()
    return acks, repubs


async def kill_ack_raw(url: str, n: int) -> list[float]:
    """The kill round trip by hand: put -> republish -> JS publish (acked) of the ack -> seen."""
    prefix = bench_prefix()
    nc_op = await nats.connect(url, name="bench-floor-operator")
    nc_ag = await nats.connect(url, name="bench-floor-agent")
    js_op = nc_op.jetstream()
    js_ag = nc_ag.jetstream()
    bucket = f"{prefix}_floorkill"
    kv = await _control_kv(js_op, prefix, bucket)
    stream = f"{prefix.upper()}_FLOORACK"
    await js_op.add_stream(StreamConfig(name=stream, subjects=[f"{prefix}.ack.>"], storage=StorageType.FILE))
    seq = 0

    async def on_kill(msg: Msg) -> None:
        nonlocal seq
        seq += 1
        await js_ag.publish(f"{prefix}.ack.i1", b'{"status":"killed"}', headers={"Nats-Msg-Id": f"a{seq}"})

    got = asyncio.Event()

    async def on_ack(_msg: Msg) -> None:
        got.set()

    await nc_ag.subscribe(f"{prefix}.ctl.acme.prod.mailer", cb=on_kill)
    await nc_op.subscribe(f"{prefix}.ack.>", cb=on_ack)
    await nc_ag.flush()
    await nc_op.flush()
    out: list[float] = []
    try:
        for i in range(n + WARMUP):
            got.clear()
            t0 = time.perf_counter()
            await kv.put("acme.prod.mailer", b'{"target":"agent://acme/prod/mailer"}')
            if not await _arrived(got, i):
                continue
            if i >= WARMUP:
                out.append((time.perf_counter() - t0) * 1000)
    finally:
        await js_op.delete_key_value(bucket)
        await js_op.delete_stream(stream)
        await nc_ag.close()
        await nc_op.close()
    return out


async def pubsub_throughput(url: str, count: int, size: int = 100) -> dict[str, Any]:
    """Messages/s from one publisher connection to one callback subscriber on another."""
    nc_sub = await nats.connect(url, name="bench-floor-sub", pending_size=64 * 1024 * 1024)
    nc_pub = await nats.connect(url, name="bench-floor-pub", pending_size=64 * 1024 * 1024)
    subject = f"bench.tp.{bench_prefix()}"
    received = 0
    done = asyncio.Event()
    t_last = 0.0

    async def on_msg(_msg: Msg) -> None:
        nonlocal received, t_last
        received += 1
        if received >= count:
            t_last = time.perf_counter()
            done.set()

    sub = await nc_sub.subscribe(subject, cb=on_msg, pending_msgs_limit=count + 10, pending_bytes_limit=-1)
    await nc_sub.flush()
    payload = b"x" * size
    t0 = time.perf_counter()
    try:
        for i in range(count):
            await nc_pub.publish(subject, payload)
            if i % 5000 == 4999:
                await nc_pub.flush()
        await nc_pub.flush()
        await asyncio.wait_for(done.wait(), max(10.0, count / 10_000))
    except TimeoutError:
        t_last = time.perf_counter()
    finally:
        dropped = sub.pending_msgs if received < count else 0
        await nc_pub.close()
        await nc_sub.close()
    elapsed = t_last - t0
    return {
        "count": count,
        "received": received,
        "size_bytes": size,
        "seconds": round(elapsed, 4),
        "msgs_per_s": round(received / elapsed, 1) if elapsed > 0 else None,
        "pending_at_end": dropped,
    }


async def measure_floor(url: str, n: int = 200, throughput_count: int = 100_000) -> dict[str, Any]:
    """All floors on the server at ``url``; latencies in ms."""
    rr = await request_reply(url, n)
    acks, repubs = await kv_put(url, n)
    kill = await kill_ack_raw(url, n)
    tp = await pubsub_throughput(url, throughput_count) if throughput_count else None
    return {
        "request_reply_ms": percentiles(rr),
        "kv_put_republish_ms": percentiles(repubs),
        "kv_put_ack_ms": percentiles(acks),
        "kill_ack_raw_ms": percentiles(kill),
        "pubsub": tp,
    }


def print_floor(floor: dict[str, Any]) -> None:
    rows = []
    for key, label in (
        ("request_reply_ms", "core request/reply"),
        ("kv_put_republish_ms", "KV put -> republished message"),
        ("kv_put_ack_ms", "KV put with ack"),
        ("kill_ack_raw_ms", "raw kill: put -> republish -> JS ack -> seen"),
    ):
        p = floor[key]
        rows.append([label, p["n"], fmt_ms(p["p50"]), fmt_ms(p["p99"]), fmt_ms(p["max"])])
    print_table("floor (raw nats-py, ms)", ["operation", "n", "p50", "p99", "max"], rows)
    tp = floor.get("pubsub")
    if tp:
        print(
            f"pub -> sub: {fmt_rate(tp['msgs_per_s'])} msgs/s at {tp['size_bytes']} B "
            f"({tp['received']:,} msgs)"
        )


async def amain(n: int, throughput_count: int, url: str | None) -> dict[str, Any]:
    with bench_server(url) as server_url:
        floor = await measure_floor(server_url, n, throughput_count)
    print_floor(floor)
    return envelope("floor", {"n": n, "throughput_count": throughput_count}, floor)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = standard_args(__doc__.splitlines()[0] if __doc__ else "floor")
    parser.add_argument("--n", type=int, default=500, help="round trips per latency floor")
    parser.add_argument("--throughput-count", type=int, default=200_000, help="messages for pub -> sub")
    args = parser.parse_args(argv)
    data = asyncio.run(amain(args.n, args.throughput_count, args.nats_url))
    write_json("floor", data, args.out)
    return data


if __name__ == "__main__":
    main()

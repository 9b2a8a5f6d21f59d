"""Gateway overhead against direct calls to the same upstream, measured in the same run.

``python -m bench.gateway_overhead [--n 2000] [--kills 50] [--seconds 5] [--concurrency 16]``

Three processes besides this one: nats-server, a minimal upstream (bench/_gw_upstream.py) and the
gateway (bench/_gw_proc.py). The client here is a raw keep-alive HTTP/1.1 client, so that what is
measured is the gateway, not a client library. Reports, each against its budget (issue 15):

* non-streaming request: p50/p99 direct and via the gateway; the difference is the overhead
* streaming time to first byte: the same, for an SSE response
* kill → next request refused: from the kill record's write being acked to the first 403
* kill → in-flight stream cut: from the same point to the stream's error event
* throughput: small requests/s over ``--concurrency`` connections for ``--seconds``, both ways
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from bench.common import bench_server, bench_settings, standard_args
from bench.support.http_client import Client, add_http_args, http_params, latencies, throughput
from bench.support.procs import Children
from bench.support.report import envelope, fmt_ms, fmt_rate, print_table, verdict, write_json
from bench.support.stats import percentiles
from gateway.keystore import create_key
from mesh.protocol.codec import encode
from mesh.protocol.models import KillRecord
from mesh.transport.connection import Connection
from mesh.transport.kvscan import delete_key, put_key
from mesh.transport.provision import provision

AGENT = "agent://bench/prod/gw"
PATH = "/v1/chat/completions"
CHAT = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).encode()
STREAM = json.dumps({"model": "gpt-4o-mini", "messages": [], "stream": True}).encode()
ENDLESS = json.dumps({"model": "endless", "messages": [], "stream": True}).encode()
BUDGETS = {
    "overhead_ms": 1.0,
    "ttfb_overhead_ms": 1.0,
    "kill_refused_ms": 5.0,
    "stream_cut_ms": 10.0,
    "rps": 2000,
}


async def _series(port: int, key: str | None, body: bytes, n: int, *, ttfb: bool = False) -> list[float]:
    c = await Client(port, key).open()
    try:
        return await latencies(c, "POST", PATH, body, n, ttfb=ttfb)
    finally:
        c.close()


async def kill_latencies(conn: Connection, gw_port: int, key: str, n: int) -> tuple[list[float], list[float]]:
    bucket, ctl_key = conn.ns.control_bucket, "bench.prod.gw"
    refused: list[float] = []
    cut: list[float] = []
    poll = await Client(gw_port, key).open()
    try:
        for i in range(2 * n):
            stream = None
            if i % 2:  # odd rounds: a stream in flight when the kill lands
                stream = await Client(gw_port, key).open()
                stream.send("POST", PATH, ENDLESS)
                status, _, _ = await stream.head()
                assert status == 200
                await stream.chunk()
            await put_key(
                conn, bucket, ctl_key, encode(KillRecord(target=AGENT, actor="bench", reason="bench"))
            )
            t0 = time.perf_counter()
            if stream is not None:
                while b'"error"' not in await stream.chunk():
                    pass
                cut.append((time.perf_counter() - t0) * 1000)
                stream.close()
            else:
                while (await poll.request("POST", PATH, CHAT)).status != 403:
                    pass
                refused.append((time.perf_counter() - t0) * 1000)
            await delete_key(conn, bucket, ctl_key)
            deadline = time.monotonic() + 10
            while (await poll.request("POST", PATH, CHAT)).status != 200:
                assert time.monotonic() < deadline, "resume never took effect"
                await asyncio.sleep(0.001)
    finally:
        poll.close()
    return refused, cut


async def run(args: Any, url: str) -> dict[str, Any]:
    children = Children()
    settings = bench_settings(url)
    try:
        up = children.spawn("-m", "bench._gw_upstream", stdout=-1)
        assert up.stdout is not None
        up_port = int(up.stdout.readline())
        async with Connection(settings, name="bench") as conn:
            await provision(conn.js, conn.ns)
            key, _ = await create_key(conn, AGENT, instance=None, upstream=None, actor="bench")
            gw = children.spawn(
                "-m", "bench._gw_proc", url, settings.prefix, f"http://127.0.0.1:{up_port}/v1", stdout=-1
            )
            assert gw.stdout is not None
            gw_port = int(await asyncio.to_thread(gw.stdout.readline))
            direct = await _series(up_port, None, CHAT, args.n)
            via = await _series(gw_port, key, CHAT, args.n)
            direct_ttfb = await _series(up_port, None, STREAM, args.n, ttfb=True)
            via_ttfb = await _series(gw_port, key, STREAM, args.n, ttfb=True)
            refused, cut = await kill_latencies(conn, gw_port, key, args.kills)
            conns = args.concurrency
            rps_direct = await throughput(up_port, [None] * conns, args.seconds, "POST", PATH, CHAT)
            rps_via = await throughput(gw_port, [key] * conns, args.seconds, "POST", PATH, CHAT)
    finally:
        children.stop_all()
    return {
        "direct": percentiles(direct),
        "via_gateway": percentiles(via),
        "direct_ttfb": percentiles(direct_ttfb),
        "via_gateway_ttfb": percentiles(via_ttfb),
        "kill_to_refused": percentiles(refused),
        "kill_to_stream_cut": percentiles(cut),
        "rps_direct": round(rps_direct, 1),
        "rps_via_gateway": round(rps_via, 1),
    }


def _over(a: dict[str, Any], b: dict[str, Any], q: str) -> float | None:
    return None if a[q] is None or b[q] is None else round(a[q] - b[q], 4)


def main() -> None:
    parser = standard_args(__doc__ or "")
    add_http_args(
        parser,
        kills_help="kill/resume rounds (each: refused and cut)",
        seconds_help="throughput duration per side",
        concurrency_help="connections for throughput",
    )
    args = parser.parse_args()
    with bench_server(args.nats_url) as url:
        r = asyncio.run(run(args, url))
    overhead = _over(r["via_gateway"], r["direct"], "p50")
    ttfb_over = _over(r["via_gateway_ttfb"], r["direct_ttfb"], "p50")

    def row(label: str, stats: dict[str, Any], note: str = "", result: str = "") -> list[Any]:
        return [label, stats["n"], fmt_ms(stats["p50"]), fmt_ms(stats["p99"]), note, result]

    refused, cut = r["kill_to_refused"], r["kill_to_stream_cut"]
    rows = [
        row("non-streaming, direct", r["direct"]),
        row("non-streaming, via gateway", r["via_gateway"], f"+{fmt_ms(overhead)} (≤ 1 ms)",
            verdict(overhead, 1.0)),
        row("streaming TTFB, direct", r["direct_ttfb"]),
        row("streaming TTFB, via gateway", r["via_gateway_ttfb"], f"+{fmt_ms(ttfb_over)} (≤ 1 ms)",
            verdict(ttfb_over, 1.0)),
        row("kill → next request refused", refused, "p50 ≤ 5 ms", verdict(refused["p50"], 5.0)),
        row("kill → in-flight stream cut", cut, "p50 ≤ 10 ms", verdict(cut["p50"], 10.0)),
    ]  # fmt: skip
    print_table(
        "gateway overhead (loopback)", ["what", "n", "p50", "p99", "vs direct / budget", "budget"], rows
    )
    print_table(
        "throughput, small requests",
        ["path", "requests/s", "ratio to direct", "budget"],
        [
            ["direct", fmt_rate(r["rps_direct"]), "1.00", ""],
            ["via gateway", fmt_rate(r["rps_via_gateway"]), f"{r['rps_via_gateway'] / r['rps_direct']:.2f}",
             f"≥ 2,000/s: {verdict(r['rps_via_gateway'], 2000, higher_is_better=True)}"],
        ],
    )  # fmt: skip
    results = {
        **r,
        "overhead_p50_ms": overhead,
        "ttfb_overhead_p50_ms": ttfb_over,
        "ratio_p50_via_to_direct": round(r["via_gateway"]["p50"] / r["direct"]["p50"], 2),
        "ratio_rps_via_to_direct": round(r["rps_via_gateway"] / r["rps_direct"], 2),
        "budgets": BUDGETS,
        "verdicts": {
            "overhead": verdict(overhead, 1.0),
            "ttfb": verdict(ttfb_over, 1.0),
            "kill_refused": verdict(r["kill_to_refused"]["p50"], 5.0),
            "stream_cut": verdict(r["kill_to_stream_cut"]["p50"], 10.0),
            "throughput": verdict(r["rps_via_gateway"], 2000, higher_is_better=True),
        },
    }
    params = http_params(args, ("httpx", "starlette", "uvicorn", "openai", "anthropic", "mcp"))
    write_json("gateway_overhead", envelope("gateway_overhead", params, results), args.out)


if __name__ == "__main__":
    main()

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
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from bench.common import (
    Children,
    bench_server,
    bench_settings,
    envelope,
    fmt_ms,
    fmt_rate,
    percentiles,
    print_table,
    standard_args,
    write_json,
)
from gateway.keystore import create_key
from mesh.protocol.codec import encode
from mesh.protocol.models import KillRecord
from mesh.transport.connection import Connection
from mesh.transport.kvscan import delete_key, put_key
from mesh.transport.provision import provision

AGENT = "agent://bench/prod/gw"
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


@dataclass
class Reply:
    status: int
    body: bytes
    first_byte: float


class Client:
    """One keep-alive HTTP/1.1 connection; just enough protocol for these requests."""

    def __init__(self, port: int, path: str, key: str | None) -> None:
        self.port, self.path, self.key = port, path, key
        self.reader: asyncio.StreamReader
        self.writer: asyncio.StreamWriter

    async def open(self) -> Client:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    def close(self) -> None:
        self.writer.close()

    def send(self, body: bytes) -> None:
        auth = f"authorization: Bearer {self.key}\r\n" if self.key else ""
        self.writer.write(
            f"POST {self.path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n{auth}"
            f"content-length: {len(body)}\r\n\r\n".encode()
            + body
        )

    async def head(self) -> tuple[int, dict[bytes, bytes], float]:
        raw = await self.reader.readuntil(b"\r\n\r\n")
        at = time.perf_counter()
        lines = raw.split(b"\r\n")
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            headers[k.strip().lower()] = v.strip()
        return int(lines[0].split(b" ")[1]), headers, at

    async def chunk(self) -> bytes:
        size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
        data = await self.reader.readexactly(size + 2)
        return data[:-2]

    async def request(self, body: bytes) -> Reply:
        self.send(body)
        status, headers, at = await self.head()
        if b"content-length" in headers:
            data = await self.reader.readexactly(int(headers[b"content-length"]))
        else:
            parts = []
            first = None
            while part := await self.chunk():
                first = first or time.perf_counter()
                parts.append(part)
            data = b"".join(parts)
            at = first or at
        if headers.get(b"connection") == b"close":
            self.close()
            await self.open()
        return Reply(status, data, at)


async def latencies(
    port: int, path: str, key: str | None, body: bytes, n: int, *, ttfb: bool = False
) -> list[float]:
    c = await Client(port, path, key).open()
    out = []
    try:
        for _ in range(n // 10):  # warm-up
            await c.request(body)
        for _ in range(n):
            t0 = time.perf_counter()
            r = await c.request(body)
            assert r.status == 200, r.body[:300]
            out.append(((r.first_byte if ttfb else time.perf_counter()) - t0) * 1000)
    finally:
        c.close()
    return out


async def throughput(port: int, path: str, key: str | None, seconds: float, concurrency: int) -> float:
    count = 0
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal count
        c = await Client(port, path, key).open()
        try:
            while time.perf_counter() < stop_at:
                r = await c.request(CHAT)
                assert r.status == 200
                count += 1
        finally:
            c.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return count / (time.perf_counter() - started)


async def kill_latencies(conn: Connection, gw_port: int, key: str, n: int) -> tuple[list[float], list[float]]:
    bucket, ctl_key = conn.ns.control_bucket, "bench.prod.gw"
    refused: list[float] = []
    cut: list[float] = []
    poll = await Client(gw_port, "/v1/chat/completions", key).open()
    try:
        for i in range(2 * n):
            stream = None
            if i % 2:  # odd rounds: a stream in flight when the kill lands
                stream = await Client(gw_port, "/v1/chat/completions", key).open()
                stream.send(ENDLESS)
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
                while (await poll.request(CHAT)).status != 403:
                    pass
                refused.append((time.perf_counter() - t0) * 1000)
            await delete_key(conn, bucket, ctl_key)
            deadline = time.monotonic() + 10
            while (await poll.request(CHAT)).status != 200:
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
            direct = await latencies(up_port, "/v1/chat/completions", None, CHAT, args.n)
            via = await latencies(gw_port, "/v1/chat/completions", key, CHAT, args.n)
            direct_ttfb = await latencies(up_port, "/v1/chat/completions", None, STREAM, args.n, ttfb=True)
            via_ttfb = await latencies(gw_port, "/v1/chat/completions", key, STREAM, args.n, ttfb=True)
            refused, cut = await kill_latencies(conn, gw_port, key, args.kills)
            rps_direct = await throughput(
                up_port, "/v1/chat/completions", None, args.seconds, args.concurrency
            )
            rps_via = await throughput(gw_port, "/v1/chat/completions", key, args.seconds, args.concurrency)
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


def verdict(value: float | None, budget: float, *, higher_is_better: bool = False) -> str:
    if value is None:
        return "not measured"
    ok = value >= budget if higher_is_better else value <= budget
    return "met" if ok else "MISSED"


def main() -> None:
    parser = standard_args(__doc__ or "")
    parser.add_argument("--n", type=int, default=2000, help="requests per latency series")
    parser.add_argument("--kills", type=int, default=50, help="kill/resume rounds (each: refused and cut)")
    parser.add_argument("--seconds", type=float, default=5.0, help="throughput duration per side")
    parser.add_argument("--concurrency", type=int, default=16, help="connections for throughput")
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
    versions = {d: _v(d) for d in ("httpx", "starlette", "uvicorn", "openai", "anthropic", "mcp")}
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
    params = {"n": args.n, "kills": args.kills, "seconds": args.seconds, "concurrency": args.concurrency,
              "versions": versions}  # fmt: skip
    write_json("gateway_overhead", envelope("gateway_overhead", params, results), args.out)


def _v(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()

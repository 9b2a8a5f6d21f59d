"""The gateway's HTTP API: heartbeat latency and throughput, and kill → long-poll return.

``python -m bench.http_api [--n 2000] [--kills 50] [--seconds 5] [--concurrency 16]``

Two processes besides this one: nats-server and the gateway, started as ``mesh gateway`` with
the API's rate limit raised out of the way. The client is a raw keep-alive HTTP/1.1 client, so
that what is measured is the gateway. Reports, each against its budget (issue 16):

* heartbeat answered "may act", and answered with a kill record in force: p50/p99
* the floor: ``GET /healthz`` on the same server and connection (the HTTP stack alone)
* throughput: heartbeats/s over ``--concurrency`` connections, one agent key each
* kill → long-poll return: from just before the kill record's write to the moment a waiting
  ``GET /api/v1/control?killed=false`` has its answer (the write's own round trip included)
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import bench_server, bench_settings, standard_args
from bench.support.http_client import Client, Reply, add_http_args, http_params, latencies, throughput
from bench.support.procs import ROOT, child_env
from bench.support.report import envelope, fmt_ms, fmt_rate, print_table, verdict, write_json
from bench.support.stats import percentiles, ratio
from gateway.keystore import create_key
from mesh.protocol.codec import encode
from mesh.protocol.models import KillRecord
from mesh.transport.connection import Connection
from mesh.transport.kvscan import delete_key, put_key
from mesh.transport.provision import provision

AGENT = "agent://bench/prod/http"
BUDGETS = {"heartbeat_p50_ms": 2.0, "heartbeat_rps": 3000, "kill_to_poll_p50_ms": 5.0}
HEARTBEAT = json.dumps({"metadata": {"step": 1}, "usage": {"emails": 1}}).encode()
HB = "/api/v1/heartbeat"
CONFIG = "[gateway]\nport = 0\n\n[api]\nrate = 1000000.0\nburst = 1000000\n"


def _killed(expected: bool) -> Callable[[Reply], None]:
    """A check on each heartbeat answer: the kill record is in it, or not."""

    def check(r: Reply) -> None:
        assert (b'"killed":true' in r.body) is expected, r.body[:300]

    return check


async def kill_to_poll(conn: Connection, port: int, key: str, n: int) -> list[float]:
    bucket, ctl_key = conn.ns.control_bucket, "bench.prod.http.p1"
    poll = await Client(port, key).open()
    check = await Client(port, key).open()
    out: list[float] = []
    try:
        for _ in range(n):
            poll.send("GET", "/api/v1/control?killed=false&wait=30")
            # The poll must be waiting before the kill is written: give the server a moment (a bench,
            # not a test) and check it has not answered.
            await asyncio.sleep(0.02)
            assert not poll.reader.at_eof()
            record = KillRecord(target=AGENT, instance="p1", actor="bench", reason="bench")
            t0 = time.perf_counter()
            await put_key(conn, bucket, ctl_key, encode(record))
            r = await poll.answer()
            out.append((time.perf_counter() - t0) * 1000)
            assert r.status == 200 and b'"killed":true' in r.body, r.body[:300]
            await delete_key(conn, bucket, ctl_key)
            deadline = time.monotonic() + 10
            while b'"killed":false' not in (await check.request("GET", "/api/v1/control")).body:
                assert time.monotonic() < deadline, "resume never took effect"
                await asyncio.sleep(0.001)
    finally:
        poll.close()
        check.close()
    return out


def start_gateway(url: str, prefix: str, tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    cfg = tmp / "gateway.toml"
    cfg.write_text(CONFIG)
    env = child_env(NATS_URL=url, MESH_PREFIX=prefix, MESH_LOG_LEVEL="ERROR")
    proc = subprocess.Popen(
        [sys.executable, "-c", "from cli.entry import main; main()", "gateway", "--config", str(cfg)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, env=env, cwd=ROOT,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()  # "gateway: http://127.0.0.1:PORT  (...)"
    if not line.startswith("gateway: "):
        proc.kill()
        raise SystemExit(f"the gateway did not start: {line!r}")
    return proc, int(line.split()[1].rsplit(":", 1)[1])


async def run(args: Any, url: str) -> dict[str, Any]:
    settings = bench_settings(url)
    with tempfile.TemporaryDirectory(prefix="mesh-bench-http-") as tmp:
        async with Connection(settings, name="bench") as conn:
            await provision(conn.js, conn.ns)
            proc, port = await asyncio.to_thread(start_gateway, url, settings.prefix, Path(tmp))
            try:
                keys = [
                    (await create_key(conn, AGENT, instance=f"w{i}", upstream=None, actor="bench"))[0]
                    for i in range(args.concurrency)
                ]
                poll_key, _ = await create_key(conn, AGENT, instance="p1", upstream=None, actor="bench")
                c = await Client(port, keys[0]).open()
                floor = await latencies(c, "GET", "/healthz", b"", args.n)
                alive = await latencies(c, "POST", HB, HEARTBEAT, args.n, check=_killed(False))
                rec = KillRecord(target=AGENT, instance="w0", actor="bench", reason="bench")
                await put_key(conn, conn.ns.control_bucket, "bench.prod.http.w0", encode(rec))
                await asyncio.sleep(0.2)  # the record reaches the gateway (checked per answer below)
                killed = await latencies(c, "POST", HB, HEARTBEAT, args.n, check=_killed(True))
                await delete_key(conn, conn.ns.control_bucket, "bench.prod.http.w0")
                c.close()
                polls = await kill_to_poll(conn, port, poll_key, args.kills)
                await asyncio.sleep(0.5)
                rps_floor = await throughput(port, keys, args.seconds, "GET", "/healthz")
                rps = await throughput(port, keys, args.seconds, "POST", HB, HEARTBEAT)
            finally:
                proc.terminate()
                await asyncio.to_thread(proc.wait, 15)
    return {
        "floor_healthz": percentiles(floor),
        "heartbeat": percentiles(alive),
        "heartbeat_killed": percentiles(killed),
        "kill_to_poll_return": percentiles(polls),
        "heartbeat_rps": round(rps, 1),
        "floor_healthz_rps": round(rps_floor, 1),
    }


def main() -> None:
    parser = standard_args(__doc__ or "")
    add_http_args(
        parser,
        kills_help="kill → long-poll rounds",
        seconds_help="throughput duration",
        concurrency_help="connections (agent keys) for throughput",
    )
    args = parser.parse_args()
    with bench_server(args.nats_url) as url:
        r = asyncio.run(run(args, url))
    floor = r["floor_healthz"]["p50"]

    def row(label: str, stats: dict[str, Any], budget: float | None = None) -> list[Any]:
        note = f"p50 ≤ {budget:g} ms" if budget else ""
        result = verdict(stats["p50"], budget) if budget else ""
        return [
            label,
            stats["n"],
            fmt_ms(stats["p50"]),
            fmt_ms(stats["p99"]),
            f"{ratio(stats['p50'], floor)}x",
            note,
            result,
        ]

    rows = [
        row("GET /healthz (floor)", r["floor_healthz"]),
        row("heartbeat, may act", r["heartbeat"], BUDGETS["heartbeat_p50_ms"]),
        row("heartbeat, kill answer", r["heartbeat_killed"], BUDGETS["heartbeat_p50_ms"]),
        row("kill → long-poll returns", r["kill_to_poll_return"], BUDGETS["kill_to_poll_p50_ms"]),
    ]
    print_table("HTTP API (loopback)", ["what", "n", "p50 ms", "p99 ms", "p50 / floor", "budget", ""], rows)
    rps_verdict = verdict(r["heartbeat_rps"], BUDGETS["heartbeat_rps"], higher_is_better=True)
    print_table(
        "HTTP heartbeat throughput",
        ["what", "connections", "requests/s", "ratio to floor", "budget", ""],
        [
            ["GET /healthz (floor)", args.concurrency, fmt_rate(r["floor_healthz_rps"]), "1.00", "", ""],
            [
                "POST /api/v1/heartbeat",
                args.concurrency,
                fmt_rate(r["heartbeat_rps"]),
                f"{ratio(r['heartbeat_rps'], r['floor_healthz_rps'])}",
                "≥ 3,000/s",
                rps_verdict,
            ],
        ],
    )
    results = {
        **r,
        "ratio_heartbeat_p50_to_floor": ratio(r["heartbeat"]["p50"], floor),
        "ratio_heartbeat_rps_to_floor": ratio(r["heartbeat_rps"], r["floor_healthz_rps"]),
        "budgets": BUDGETS,
        "verdicts": {
            "heartbeat_p50": verdict(r["heartbeat"]["p50"], BUDGETS["heartbeat_p50_ms"]),
            "heartbeat_killed_p50": verdict(r["heartbeat_killed"]["p50"], BUDGETS["heartbeat_p50_ms"]),
            "heartbeat_rps": rps_verdict,
            "kill_to_poll_p50": verdict(r["kill_to_poll_return"]["p50"], BUDGETS["kill_to_poll_p50_ms"]),
        },
    }
    params = http_params(args, ("starlette", "uvicorn", "httptools", "uvloop", "pydantic"))
    write_json("http_api", envelope("http_api", params, results), args.out)


if __name__ == "__main__":
    main()

"""The peer: Celery remote control over a local Redis, next to our kill, same N processes, same run.

Celery: ``app.control.broadcast("bench_halt", reply=True, limit=N)`` to N worker processes
(``--pool=solo``: one process each), timed until all N replies are in. Ours: kill -> every
instance acknowledged, with N processes each running one ``AsyncAgent``
(:func:`bench.kill_latency.measure`). redis-server (Debian's) is started by this script on a free
loopback port with no persistence. ``python -m bench.peer_celery``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.common import bench_server, standard_args
from bench.support.procs import ROOT, child_env, free_port
from bench.support.report import envelope, fmt_ms, fmt_ratio, print_table, write_json
from bench.support.stats import percentiles, ratio

__all__ = ["measure_celery", "redis_server"]

REDIS_HINT = (
    "redis-server not found. Install Debian's: `apt-get install -y redis-server` (as root), "
    "or put a redis-server binary on PATH / in BENCH_REDIS_SERVER. The bench starts it itself "
    "on a free loopback port with no persistence; no service needs to be running."
)


def find_redis_server() -> str:
    explicit = os.environ.get("BENCH_REDIS_SERVER")
    found = (
        explicit
        or shutil.which("redis-server")
        or ("/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None)
    )
    if not found:
        raise SystemExit(REDIS_HINT)
    return found


def redis_version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10, check=False)
    for part in out.stdout.split():
        if part.startswith("v="):
            return part[2:]
    return out.stdout.strip() or "unknown"


@contextlib.contextmanager
def redis_server(tmp: Path) -> Iterator[str]:
    """A throwaway redis-server on loopback: no RDB, no AOF. Yields its URL."""
    import redis

    binary = find_redis_server()
    port = free_port()
    log = open(tmp / "redis.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            binary,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "yes",
            "--dir",
            str(tmp),
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 15
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"redis-server exited with {proc.returncode}: see {tmp / 'redis.log'}")
            try:
                if client.ping():
                    break
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline:
                    raise SystemExit("redis-server did not answer within 15 s") from None
                time.sleep(0.05)
        client.close()
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


class CeleryWorkers:
    """N ``celery worker --pool=solo`` processes started (and stopped) by us, by pid."""

    def __init__(self, broker: str, tmp: Path) -> None:
        self.broker = broker
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes]] = []
        self.queue = f"bench_peer_{uuid.uuid4().hex[:8]}"

    def grow_to(self, n: int) -> None:
        env = child_env(BENCH_CELERY_BROKER=self.broker)
        while len(self.procs) < n:
            i = len(self.procs)
            log = open(self.tmp / f"worker{i}.log", "wb")  # noqa: SIM115 - the child keeps it
            self.procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "celery",
                        "-A",
                        "bench.peer_celery_app",
                        "worker",
                        "--pool=solo",
                        "-n",
                        f"bench{i}@localhost",
                        "-Q",
                        self.queue,
                        "--without-gossip",
                        "--without-mingle",
                        "--without-heartbeat",
                        "--loglevel=WARNING",
                    ],
                    env=env,
                    cwd=ROOT,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            )
            log.close()

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        self.procs.clear()


def _wait_ready(app: Any, n: int, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        replies = app.control.broadcast("ping", reply=True, limit=n, timeout=1.0)
        if len(replies) >= n:
            return
    raise SystemExit(f"only some of {n} celery workers answered within {timeout:g} s")


def measure_celery(ns: list[int], reps: int, warmup: int = 5) -> dict[str, Any]:
    """Broadcast -> all N replies, in ms, for each N (workers added incrementally)."""
    from bench import peer_celery_app

    with tempfile.TemporaryDirectory(prefix="mesh-bench-celery-") as tmpdir:
        tmp = Path(tmpdir)
        with redis_server(tmp) as url:
            os.environ["BENCH_CELERY_BROKER"] = url
            app = peer_celery_app.app
            app.conf.broker_url = url
            workers = CeleryWorkers(url, tmp)
            out: dict[str, Any] = {"redis_server": redis_version(find_redis_server()), "by_n": {}}
            try:
                for n in ns:
                    workers.grow_to(n)
                    _wait_ready(app, n)
                    samples: list[float] = []
                    short = 0
                    for i in range(reps + warmup):
                        t0 = time.perf_counter()
                        replies = app.control.broadcast("bench_halt", reply=True, limit=n, timeout=5.0)
                        dt = (time.perf_counter() - t0) * 1000
                        if len(replies) < n:
                            short += 1
                            continue
                        if i >= warmup:
                            samples.append(dt)
                    out["by_n"][str(n)] = {
                        "processes": n,
                        "all_replied_ms": percentiles(samples),
                        "incomplete": short,
                    }
            finally:
                workers.stop()
                with contextlib.suppress(Exception):
                    app.close()
    return out


async def _measure_mesh(url: str, ns: list[int], reps: int) -> dict[str, Any]:
    from bench.kill_latency import measure

    out: dict[str, Any] = {}
    for n in ns:
        res = await measure(url, instances=n, processes=n, cycles=reps, floor_n=0)
        out[str(n)] = res
    return out


def run(ns: list[int], reps: int, nats_url: str | None) -> dict[str, Any]:
    from bench.floor import kill_ack_raw, request_reply

    celery = measure_celery(ns, reps)
    mesh: dict[str, Any] = {}
    floor: dict[str, Any] = {}
    mesh_error: str | None = None
    with bench_server(nats_url) as url:
        floor["request_reply_ms"] = percentiles(asyncio.run(request_reply(url, 200)))
        floor["kill_ack_raw_ms"] = percentiles(asyncio.run(kill_ack_raw(url, 200)))
        try:
            mesh = asyncio.run(_measure_mesh(url, ns, reps))
        except ImportError as exc:  # the SDK or operator API not there yet
            mesh_error = f"{type(exc).__name__}: {exc}"
    f_kill = floor["kill_ack_raw_ms"]["p50"]
    rows = []
    comparison: dict[str, Any] = {}
    for n in ns:
        c = celery["by_n"][str(n)]["all_replied_ms"]
        m = mesh.get(str(n), {}).get("all_acked_ms", {}) if mesh else {}
        comparison[str(n)] = {
            "celery_p50_ms": c["p50"],
            "celery_p99_ms": c["p99"],
            "mesh_p50_ms": m.get("p50"),
            "mesh_p99_ms": m.get("p99"),
            "mesh_over_celery_p50": ratio(m.get("p50"), c["p50"]),
            "celery_over_floor_p50": ratio(c["p50"], f_kill),
            "mesh_over_floor_p50": ratio(m.get("p50"), f_kill),
        }
        cc = comparison[str(n)]
        rows.append(
            [
                n,
                fmt_ms(c["p50"]),
                fmt_ms(c["p99"]),
                fmt_ms(m.get("p50")),
                fmt_ms(m.get("p99")),
                fmt_ratio(cc["mesh_over_celery_p50"]),
                fmt_ratio(cc["celery_over_floor_p50"]),
                fmt_ratio(cc["mesh_over_floor_p50"]),
            ]
        )
    print_table(
        f"Celery broadcast->all replied vs mesh kill->all acked, ms ({reps} reps; "
        f"floor: raw kill {fmt_ms(f_kill)} ms)",
        [
            "N procs",
            "celery p50",
            "celery p99",
            "mesh p50",
            "mesh p99",
            "mesh/celery",
            "celery/floor",
            "mesh/floor",
        ],
        rows,
    )
    if mesh_error:
        print(f"mesh side not measured: {mesh_error}")
    return {
        "celery": celery,
        "mesh": mesh,
        "mesh_error": mesh_error,
        "floor": floor,
        "comparison": comparison,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = standard_args("Celery remote control vs mesh kill, same N processes, same run")
    parser.add_argument("--n", type=int, nargs="+", default=[1, 2, 4, 8], help="worker process counts")
    parser.add_argument("--reps", type=int, default=50, help="broadcasts / kill cycles per N")
    args = parser.parse_args(argv)
    results = run(args.n, args.reps, args.nats_url)
    data = envelope("peer_celery", {"n": args.n, "reps": args.reps}, results)
    write_json("peer_celery", data, args.out)
    return data


if __name__ == "__main__":
    main()

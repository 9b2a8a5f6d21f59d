"""Controller heartbeat ingest: sustained heartbeats/s with nothing dropped, freshness, RSS.

Heartbeats are raw Heartbeat JSON for ``--instances`` simulated instances, published by
``--publishers`` separate processes (:mod:`bench._hb_pub`). Phases, on one server in one run:

1. floor: a bare nats-py callback subscriber process (:mod:`bench._raw_sub`) under the same
   publishers flat out (and once more decoding each message with the Heartbeat model);
2. the controller (``controller.serve`` in its own process) learns all instances; RSS is read;
3. rate steps: publishers paced at each rate for ``--step-seconds``; the controller's own
   counters (its ``PREFIX.controller.status`` endpoint, as in ``$SRV.STATS``) say how many it
   received; a step is *sustained* when none were dropped and its backlog drained within 1 s;
4. freshness: the age of ``last_seen`` in the instances KV for every instance, at the end.

Phases 2-4 run twice, each on a fresh prefix: with the controller's Prometheus metrics off, then
on (``--metrics both``, the default), scraped every ``--scrape-every`` seconds throughout, as a
Prometheus would (its default interval is 15 s: 1 s is the harsher case). The scrapes' durations
are reported too (they run in the controller's loop, over the whole fleet).

``python -m bench.ingest``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import nats
import psutil

from bench.common import (
    Children,
    bench_prefix,
    bench_server,
    bench_settings,
    envelope,
    fmt_rate,
    fmt_ratio,
    percentiles,
    print_table,
    ratio,
    standard_args,
    write_json,
)

__all__ = ["measure"]


def _publishers(
    kids: Children,
    url: str,
    prefix: str,
    instances: int,
    publishers: int,
    rate: float,
    seconds: float,
    interval: float = 2.0,
) -> list[subprocess.Popen[bytes]]:
    share = instances // publishers
    start_at = time.time() + 1.0 + 0.2 * publishers
    procs = []
    for p in range(publishers):
        count = share if p < publishers - 1 else instances - share * (publishers - 1)
        procs.append(
            kids.spawn(
                "-m",
                "bench._hb_pub",
                url,
                prefix,
                "--first",
                str(p * share),
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
    return procs


def _collect(procs: list[subprocess.Popen[bytes]], timeout: float) -> dict[str, Any]:
    published = 0
    seconds = 0.0
    for proc in procs:
        out, _ = proc.communicate(timeout=timeout)
        line = out.decode().strip().splitlines()[-1] if out.strip() else "{}"
        res = json.loads(line)
        published += int(res.get("published", 0))
        seconds = max(seconds, float(res.get("seconds", 0.0)))
    return {"published": published, "seconds": seconds}


async def _request_json(nc: nats.NATS, subject: str, timeout: float = 5.0) -> dict[str, Any]:
    msg = await nc.request(subject, b"", timeout=timeout)
    return dict(json.loads(msg.data))


async def _settle(get_count: Any, target: int, timeout: float) -> tuple[int, float]:
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


async def _floor(
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
        before = (await _request_json(nc, subj))["received"]
        procs = _publishers(kids, url, prefix, instances, publishers, 0, seconds)
        t_start = time.perf_counter()
        pub = await asyncio.get_running_loop().run_in_executor(None, _collect, procs, seconds + 60)

        async def count() -> int:
            return int((await _request_json(nc, subj))["received"]) - before

        got, drain = await _settle(count, pub["published"], 30)
        elapsed = time.perf_counter() - t_start - 1.0 - 0.2 * publishers
        stats = await _request_json(nc, subj)
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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Scraper:
    """GETs ``/metrics`` every ``every`` seconds, as Prometheus would; keeps each scrape's duration."""

    def __init__(self, port: int, every: float) -> None:
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.every = every
        self.durations: list[float] = []
        self.failures = 0
        self.last_ingested: float | None = None
        self.last_bytes = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        async with aiohttp.ClientSession() as session:
            while True:
                t0 = time.perf_counter()
                try:
                    async with session.get(self.url, timeout=aiohttp.ClientTimeout(total=10)) as resp:
                        body = await resp.read()
                    self.durations.append(time.perf_counter() - t0)
                    self.last_bytes = len(body)
                    for line in body.decode().splitlines():
                        if line.startswith("mesh_controller_heartbeats_ingested_total "):
                            self.last_ingested = float(line.split()[1])
                except (aiohttp.ClientError, TimeoutError):
                    self.failures += 1
                await asyncio.sleep(max(0.0, self.every - (time.perf_counter() - t0)))

    def summary(self) -> dict[str, Any]:
        return {
            "scrapes": len(self.durations),
            "failures": self.failures,
            "scrape_ms": percentiles([d * 1000 for d in self.durations], 2) if self.durations else None,
            "body_bytes": self.last_bytes,
            "heartbeats_ingested_last_scrape": self.last_ingested,
        }


def _rss_mb(pid: int) -> float:
    return round(psutil.Process(pid).memory_info().rss / 1024 / 1024, 1)


async def _controller_phase(
    url: str,
    prefix: str,
    instances: int,
    publishers: int,
    rates: list[float],
    step_seconds: float,
    interval: float,
    tmp: Path,
    metrics_port: int | None = None,
    scrape_every: float = 1.0,
) -> dict[str, Any]:
    from mesh.protocol.models import InstanceStatus
    from mesh.transport.connection import Connection
    from mesh.transport.kvscan import scan_latest
    from mesh.transport.provision import provision

    settings = bench_settings(url, prefix)
    conn = await Connection.open(settings, name="bench-ingest")
    await provision(conn.js, conn.ns)
    nc = conn.nc
    status_subject = f"{prefix}.controller.status"
    out: dict[str, Any] = {"steps": [], "metrics": metrics_port is not None}
    scraper: _Scraper | None = None
    with Children() as kids:
        extra = [str(metrics_port)] if metrics_port is not None else []
        log_path = tmp / f"controller-{prefix}.log"
        ctl = kids.spawn(
            "-m", "bench._controller_proc", url, prefix, *extra, stdout=subprocess.PIPE, log=log_path
        )
        assert ctl.stdout is not None
        await asyncio.get_running_loop().run_in_executor(None, ctl.stdout.readline)
        deadline = time.monotonic() + 30
        stats: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                stats = await _request_json(nc, status_subject, 1.0)
                break
            except Exception:
                await asyncio.sleep(0.2)
        if not stats:
            raise SystemExit(f"controller did not answer {status_subject} (log: {log_path})")
        if metrics_port is not None:
            scraper = _Scraper(metrics_port, scrape_every)
            scraper.start()
        await asyncio.sleep(1.0)
        out["rss_mb_idle"] = _rss_mb(ctl.pid)

        async def received() -> int:
            s = await _request_json(nc, status_subject)
            return int(s.get("received", s.get("heartbeats", 0)))

        # learn every instance: each heartbeats a few times at a gentle rate
        warm_rate = min(20_000.0, instances / interval * 2)
        procs = _publishers(
            kids, url, prefix, instances, publishers, warm_rate, max(2.0, 3 * instances / warm_rate), interval
        )
        await asyncio.get_running_loop().run_in_executor(None, _collect, procs, 120)
        await asyncio.sleep(max(1.5, interval))
        out["stats_after_warmup"] = await _request_json(nc, status_subject)
        out["rss_mb_at_instances"] = _rss_mb(ctl.pid)
        out["instances"] = instances

        best: float | None = None
        for rate in rates:
            before = await received()
            cpu0 = psutil.Process(ctl.pid).cpu_times()
            procs = _publishers(kids, url, prefix, instances, publishers, rate, step_seconds, interval)
            pub = await asyncio.get_running_loop().run_in_executor(None, _collect, procs, step_seconds + 60)

            async def delta(before: int = before) -> int:
                return await received() - before

            got, drain = await _settle(delta, pub["published"], 30)
            cpu1 = psutil.Process(ctl.pid).cpu_times()
            achieved = pub["published"] / pub["seconds"] if pub["seconds"] else 0.0
            step = {
                "target_rate": rate,
                "published": pub["published"],
                "publish_rate": round(achieved, 1),
                "received": got,
                "dropped": pub["published"] - got,
                "drain_s": round(drain, 3),
                "controller_cpu_s": round((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system), 2),
                "rss_mb": _rss_mb(ctl.pid),
            }
            step["sustained"] = step["dropped"] == 0 and drain <= 1.0 and achieved >= 0.9 * rate
            out["steps"].append(step)
            if step["sustained"]:
                best = max(best or 0.0, achieved)
            else:
                break
        out["sustained_heartbeats_per_s"] = round(best, 1) if best else None
        out["stats_end"] = await _request_json(nc, status_subject)

        # freshness: everyone heartbeats at its interval for two intervals, then read last_seen ages
        procs = _publishers(
            kids, url, prefix, instances, publishers, instances / interval, 2 * interval, interval
        )
        await asyncio.get_running_loop().run_in_executor(None, _collect, procs, 120)
        await asyncio.sleep(0.5)
        entries = await scan_latest(conn, conn.ns.instances_bucket)
        now = time.time()
        ages: list[float] = []
        by_status: dict[str, int] = {}
        for entry in entries.values():
            rec = InstanceStatus.model_validate_json(entry.value)
            ages.append(now - rec.last_seen.timestamp())
            by_status[rec.status.value] = by_status.get(rec.status.value, 0) + 1
        out["freshness"] = {
            "kv_records": len(entries),
            "by_status": by_status,
            "last_seen_age_s": percentiles(ages, 3),
            "interval_s": interval,
        }
        out["rss_mb_end"] = _rss_mb(ctl.pid)
        if scraper is not None:
            await scraper.stop()
            out["scrapes"] = scraper.summary()
        kids.stop(ctl)
    await conn.close()
    return out


async def measure(
    url: str,
    instances: int,
    publishers: int,
    floor_seconds: float,
    rates: list[float],
    step_seconds: float,
    interval: float = 2.0,
    metrics: str = "both",
    scrape_every: float = 1.0,
    log_dir: Path | None = None,
) -> dict[str, Any]:
    prefix = bench_prefix()
    floor = {
        "raw": await _floor(url, prefix, instances, publishers, floor_seconds, decode=False),
        "decode": await _floor(url, prefix, instances, publishers, floor_seconds, decode=True),
    }
    phases: dict[str, dict[str, Any]] = {}
    with contextlib.ExitStack() as stack:
        tmp = log_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mesh-ingest-")))
        for mode in ("off", "on"):
            if metrics not in (mode, "both"):
                continue
            phases[mode] = await _controller_phase(
                url,
                bench_prefix(),
                instances,
                publishers,
                rates,
                step_seconds,
                interval,
                tmp,
                metrics_port=_free_port() if mode == "on" else None,
                scrape_every=scrape_every,
            )
    ctl = phases.get("off") or phases["on"]
    on = phases.get("on")
    sustained = ctl.get("sustained_heartbeats_per_s")
    with_metrics = on.get("sustained_heartbeats_per_s") if on else None
    return {
        "floor": floor,
        "controller": ctl,
        "controller_metrics_on": on,
        "summary": {
            "sustained_with_metrics_per_s": with_metrics,
            "metrics_on_to_off": ratio(with_metrics, sustained, 3) if "off" in phases else None,
            "scrape_ms": on["scrapes"]["scrape_ms"] if on else None,
            "sustained_heartbeats_per_s": sustained,
            "raw_subscribe_per_s": floor["raw"]["received_per_s"],
            "decode_subscribe_per_s": floor["decode"]["received_per_s"],
            "ratio_to_raw_subscribe": ratio(sustained, floor["raw"]["received_per_s"], 3),
            "ratio_to_decode_subscribe": ratio(sustained, floor["decode"]["received_per_s"], 3),
            "rss_mb_at_instances": ctl.get("rss_mb_at_instances"),
            "rss_mb_end": ctl.get("rss_mb_end"),
            "instances": instances,
            "last_seen_age_p99_s": ctl["freshness"]["last_seen_age_s"]["p99"],
            "last_seen_age_max_s": ctl["freshness"]["last_seen_age_s"]["max"],
        },
    }


def print_ingest(res: dict[str, Any]) -> None:
    f = res["floor"]
    rows = [
        [
            "raw nats-py subscriber (floor)",
            fmt_rate(f["raw"]["publish_rate"]),
            fmt_rate(f["raw"]["received_per_s"]),
            f["raw"]["dropped"],
            "1.0x",
        ],
        [
            "subscriber + Heartbeat decode",
            fmt_rate(f["decode"]["publish_rate"]),
            fmt_rate(f["decode"]["received_per_s"]),
            f["decode"]["dropped"],
            fmt_ratio(ratio(f["decode"]["received_per_s"], f["raw"]["received_per_s"])),
        ],
    ]
    phases = [res["controller"]]
    on = res.get("controller_metrics_on")
    if on is not None and on is not res["controller"]:
        phases.append(on)
    for phase in phases:
        tag = " +metrics" if phase["metrics"] else " -metrics"
        rows.extend(_step_rows(phase["steps"], tag, f["raw"]["received_per_s"]))
    print_table(
        "heartbeat ingest (msgs/s)", ["phase", "published/s", "received/s", "dropped", "of raw floor"], rows
    )
    s = res["summary"]
    fr = res["controller"]["freshness"]
    print(
        f"sustained: {fmt_rate(s['sustained_heartbeats_per_s'])} hb/s with 0 dropped "
        f"({fmt_ratio(s['ratio_to_raw_subscribe'])} of raw subscribe); "
        f"RSS at {s['instances']:,} instances: {s['rss_mb_at_instances']} MB (end {s['rss_mb_end']} MB); "
        f"last_seen age p50/p99/max {fr['last_seen_age_s']['p50']}/{fr['last_seen_age_s']['p99']}/"
        f"{fr['last_seen_age_s']['max']} s over {fr['kv_records']:,} records {fr['by_status']}"
    )
    if on:
        sc = on["scrapes"]
        print(
            f"with metrics on: {fmt_rate(s['sustained_with_metrics_per_s'])} hb/s sustained "
            f"(on/off {fmt_ratio(s['metrics_on_to_off'])}); {sc['scrapes']} scrapes "
            f"({sc['failures']} failed), {sc['body_bytes']:,} bytes each, "
            f"scrape ms p50/p99 {sc['scrape_ms']['p50'] if sc['scrape_ms'] else '-'}/"
            f"{sc['scrape_ms']['p99'] if sc['scrape_ms'] else '-'}"
        )


def _step_rows(steps: list[dict[str, Any]], tag: str, floor: float) -> list[list[Any]]:
    rows = []
    for s in steps:
        rows.append(
            [
                f"controller{tag} @ {s['target_rate']:,.0f}/s"
                + (" ok" if s["sustained"] else " NOT sustained"),
                fmt_rate(s["publish_rate"]),
                fmt_rate(s["received"] / max(s["published"], 1) * s["publish_rate"]),
                s["dropped"],
                fmt_ratio(ratio(s["publish_rate"], floor)),
            ]
        )
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = standard_args("controller heartbeat ingest")
    parser.add_argument("--instances", type=int, default=10_000)
    parser.add_argument("--publishers", type=int, default=2)
    parser.add_argument("--floor-seconds", type=float, default=3.0)
    parser.add_argument("--step-seconds", type=float, default=3.0)
    parser.add_argument("--rates", type=float, nargs="+", default=[10_000, 25_000, 50_000, 75_000, 100_000])
    parser.add_argument("--interval", type=float, default=2.0, help="heartbeat interval of the instances")
    parser.add_argument(
        "--metrics",
        choices=["off", "on", "both"],
        default="both",
        help="run the controller phases with its Prometheus metrics off, on (scraped), or both",
    )
    parser.add_argument("--scrape-every", type=float, default=1.0, help="seconds between scrapes")
    parser.add_argument("--log-dir", type=Path, help="keep the controllers' logs here (default: a temp dir)")
    args = parser.parse_args(argv)
    with bench_server(args.nats_url) as url:
        res = asyncio.run(
            measure(
                url,
                args.instances,
                args.publishers,
                args.floor_seconds,
                args.rates,
                args.step_seconds,
                args.interval,
                args.metrics,
                args.scrape_every,
                args.log_dir,
            )
        )
    print_ingest(res)
    params = {
        k: getattr(args, k)
        for k in (
            "instances",
            "publishers",
            "floor_seconds",
            "step_seconds",
            "rates",
            "interval",
            "metrics",
            "scrape_every",
        )
    }
    data = envelope("ingest", params, res)
    write_json("ingest", data, args.out)
    return data


if __name__ == "__main__":
    main()

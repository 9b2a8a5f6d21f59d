"""One controller phase of the ingest bench: learn every instance, rate steps, freshness, RSS."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import psutil

from bench.common import bench_settings, request_json
from bench.ingestion.publishers import collect, settle, start_publishers
from bench.ingestion.scraper import Scraper
from bench.support.procs import Children, spawn_controller
from bench.support.stats import percentiles

__all__ = ["controller_phase"]


def _rss_mb(pid: int) -> float:
    return round(psutil.Process(pid).memory_info().rss / 1024 / 1024, 1)


async def controller_phase(
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
    scraper: Scraper | None = None
    with Children() as kids:
        extra = [str(metrics_port)] if metrics_port is not None else []
        log_path = tmp / f"controller-{prefix}.log"
        ctl = await asyncio.to_thread(spawn_controller, kids, url, prefix, *extra, log=log_path)
        deadline = time.monotonic() + 30
        stats: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                stats = await request_json(nc, status_subject, 1.0)
                break
            except Exception:
                await asyncio.sleep(0.2)
        if not stats:
            raise SystemExit(f"controller did not answer {status_subject} (log: {log_path})")
        if metrics_port is not None:
            scraper = Scraper(metrics_port, scrape_every)
            scraper.start()
        await asyncio.sleep(1.0)
        out["rss_mb_idle"] = _rss_mb(ctl.pid)

        async def received() -> int:
            s = await request_json(nc, status_subject)
            return int(s.get("received", s.get("heartbeats", 0)))

        # learn every instance: each heartbeats a few times at a gentle rate
        warm_rate = min(20_000.0, instances / interval * 2)
        procs = start_publishers(
            kids, url, prefix, instances, publishers, warm_rate, max(2.0, 3 * instances / warm_rate), interval
        )
        await asyncio.get_running_loop().run_in_executor(None, collect, procs, 120)
        await asyncio.sleep(max(1.5, interval))
        out["stats_after_warmup"] = await request_json(nc, status_subject)
        out["rss_mb_at_instances"] = _rss_mb(ctl.pid)
        out["instances"] = instances

        best: float | None = None
        for rate in rates:
            before = await received()
            cpu0 = psutil.Process(ctl.pid).cpu_times()
            procs = start_publishers(kids, url, prefix, instances, publishers, rate, step_seconds, interval)
            pub = await asyncio.get_running_loop().run_in_executor(None, collect, procs, step_seconds + 60)

            async def delta(before: int = before) -> int:
                return await received() - before

            got, drain = await settle(delta, pub["published"], 30)
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
        out["stats_end"] = await request_json(nc, status_subject)

        # freshness: everyone heartbeats at its interval for two intervals, then read last_seen ages
        procs = start_publishers(
            kids, url, prefix, instances, publishers, instances / interval, 2 * interval, interval
        )
        await asyncio.get_running_loop().run_in_executor(None, collect, procs, 120)
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

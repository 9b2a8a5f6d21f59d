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
import tempfile
from pathlib import Path
from typing import Any

from bench.common import bench_prefix, bench_server, standard_args
from bench.ingestion.controller_phase import controller_phase
from bench.ingestion.floor import raw_floor
from bench.ingestion.table import print_ingest
from bench.support.procs import free_port
from bench.support.report import envelope, write_json
from bench.support.stats import ratio

__all__ = ["measure"]


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
        "raw": await raw_floor(url, prefix, instances, publishers, floor_seconds, decode=False),
        "decode": await raw_floor(url, prefix, instances, publishers, floor_seconds, decode=True),
    }
    phases: dict[str, dict[str, Any]] = {}
    with contextlib.ExitStack() as stack:
        tmp = log_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mesh-ingest-")))
        for mode in ("off", "on"):
            if metrics not in (mode, "both"):
                continue
            phases[mode] = await controller_phase(
                url,
                bench_prefix(),
                instances,
                publishers,
                rates,
                step_seconds,
                interval,
                tmp,
                metrics_port=free_port() if mode == "on" else None,
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

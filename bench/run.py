"""Run every benchmark, then write ``bench/results/latest.json`` and ``kill_latency.png``.

``python -m bench.run --profile quick`` (a few minutes on 2 cores; ``make bench``) or
``--profile full`` (N up to 10,000, longer steps; py-spy on the kill path at the largest N).
``--only kill_latency ingest`` runs a subset. Each script runs in its own interpreter, with its own
embedded nats-server, and writes its own JSON; this one gathers them and prints the headline table
(every figure with its ratio to the floor measured in the same run).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.support.machine import machine_info
from bench.support.procs import ROOT, child_env
from bench.support.report import RESULTS_DIR, fmt_ms, fmt_rate, fmt_ratio, print_table, write_json
from bench.support.stats import ratio

PROFILES: dict[str, dict[str, list[str]]] = {
    "quick": {
        "floor": ["--n", "300", "--throughput-count", "100000"],
        "sdk_overhead": ["--n", "100000", "--repeats", "5"],
        "quota": ["--n", "100000", "--repeats", "5", "--refills", "500"],
        "kill_latency": [
            "--n",
            "1",
            "10",
            "100",
            "1000",
            "--cycles",
            "20",
            "--agents-per-connection",
            "0",
            "1",
        ],
        "peer_celery": ["--n", "1", "2", "4", "8", "--reps", "30"],
        "gateway_overhead": ["--n", "2000", "--kills", "50", "--seconds", "5"],
        "ingest": [
            "--instances",
            "10000",
            "--floor-seconds",
            "2",
            "--step-seconds",
            "3",
            "--rates",
            "10000",
            "25000",
            "50000",
            "75000",
            "100000",
        ],
    },
    "full": {
        "floor": ["--n", "1000", "--throughput-count", "300000"],
        "sdk_overhead": ["--n", "500000", "--repeats", "7"],
        "quota": ["--n", "500000", "--repeats", "7", "--refills", "2000"],
        "kill_latency": [
            "--n",
            "1",
            "10",
            "100",
            "1000",
            "10000",
            "--cycles",
            "50",
            "--agents-per-connection",
            "0",
            "1",
            "--py-spy",
            "{out}/py-spy",
        ],
        "peer_celery": ["--n", "1", "2", "4", "8", "--reps", "100"],
        "gateway_overhead": ["--n", "10000", "--kills", "200", "--seconds", "10"],
        "ingest": [
            "--instances",
            "10000",
            "--floor-seconds",
            "5",
            "--step-seconds",
            "10",
            "--rates",
            "10000",
            "25000",
            "50000",
            "75000",
            "100000",
            "150000",
        ],
    },
    # for the smoke test: everything at tiny N, seconds in all
    "smoke": {
        "floor": ["--n", "20", "--throughput-count", "2000"],
        "sdk_overhead": ["--n", "2000", "--repeats", "2"],
        "quota": ["--n", "2000", "--repeats", "2", "--refills", "20"],
        "kill_latency": ["--n", "1", "3", "--cycles", "2", "--floor-n", "20"],
        "peer_celery": ["--n", "1", "2", "--reps", "3"],
        "gateway_overhead": ["--n", "30", "--kills", "2", "--seconds", "0.5", "--concurrency", "2"],
        "ingest": [
            "--instances",
            "200",
            "--floor-seconds",
            "0.5",
            "--step-seconds",
            "0.5",
            "--rates",
            "2000",
            "--interval",
            "0.5",
            "--metrics",
            "on",  # one controller phase, as before, through the metrics path
        ],
    },
}

ORDER = ["floor", "sdk_overhead", "quota", "kill_latency", "peer_celery", "ingest", "gateway_overhead"]
TIMEOUT = {"quick": 600, "full": 3600, "smoke": 240}


def run_one(name: str, args: list[str], out: Path, timeout: float) -> dict[str, Any]:
    cmd = [
        sys.executable,
        "-m",
        f"bench.{name}",
        *[a.replace("{out}", str(out)) for a in args],
        "--out",
        str(out),
    ]
    print(f"\n=== {name}: {' '.join(cmd[1:])}", flush=True)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=child_env(), timeout=timeout, check=False)
        code: int | str = proc.returncode
    except subprocess.TimeoutExpired:
        code = "timeout"
    seconds = round(time.perf_counter() - t0, 1)
    path = out / f"{name}.json"
    if code == 0 and path.exists():
        data: dict[str, Any] = json.loads(path.read_text())
        data["wall_seconds"] = seconds
        return data
    return {"bench": name, "error": f"exit {code}", "wall_seconds": seconds}


def summarise(res: dict[str, Any]) -> dict[str, Any]:
    """The headline figures, each with its ratio to the matching floor."""
    s: dict[str, Any] = {}
    floor = res.get("floor", {}).get("results")
    if floor:
        s["floor"] = {
            "request_reply_p50_ms": floor["request_reply_ms"]["p50"],
            "kv_put_republish_p50_ms": floor["kv_put_republish_ms"]["p50"],
            "kv_put_ack_p50_ms": floor["kv_put_ack_ms"]["p50"],
            "kill_ack_raw_p50_ms": floor["kill_ack_raw_ms"]["p50"],
            "pubsub_msgs_per_s": (floor.get("pubsub") or {}).get("msgs_per_s"),
        }
    kl = res.get("kill_latency", {}).get("results")
    if kl:
        f = kl["floor"]["kill_ack_raw_ms"]["p50"]

        def row(r: dict[str, Any]) -> dict[str, Any]:
            return {
                "processes": r["processes"],
                "agents_per_connection": r.get("agents_per_connection", 1),
                "all_acked_p50_ms": r["all_acked_ms"]["p50"],
                "all_acked_p99_ms": r["all_acked_ms"]["p99"],
                "all_acked_max_ms": r["all_acked_ms"]["max"],
                "p50_over_floor": ratio(r["all_acked_ms"]["p50"], f),
                "p99_over_floor": ratio(r["all_acked_ms"]["p99"], f),
                "resume_all_p50_ms": r["resume_all_ms"]["p50"],
                "cpu_us_per_instance_cycle": r.get("cpu_us_per_instance_cycle"),
                "floor_kill_ack_raw_p50_ms": f,
            }

        s["kill_latency"] = {n: row(r) for n, r in kl["by_n"].items()}
        # Every agents-per-connection variant run (e.g. "1": each agent on its own connection).
        variants = kl.get("by_agents_per_connection") or {}
        if len(variants) > 1:
            s["kill_latency_by_agents_per_connection"] = {
                apc: {n: row(r) for n, r in by_n.items()} for apc, by_n in variants.items()
            }
    ing = res.get("ingest", {}).get("results")
    if ing:
        s["ingest"] = ing["summary"]
    so = res.get("sdk_overhead", {}).get("results")
    if so:
        s["sdk_overhead"] = {
            r["op"]: {
                "us_per_call": r["us_per_call_median"],
                "vs_bare_call": r.get("ratio_to_bare_call"),
                "share_of_rtt_floor": r.get("share_of_rtt_floor"),
            }
            for r in so["rows"]
        }
    pc = res.get("peer_celery", {}).get("results")
    if pc:
        s["peer_celery"] = pc["comparison"]
    qu = res.get("quota", {}).get("results")
    if qu:
        s["quota"] = {
            "spend_us": qu["spend_us"],
            "spend_vs_record": qu["spend_vs_record"],
            "refill_p50_ms": qu["refill_ms"]["p50"],
            "refill_p99_ms": qu["refill_ms"]["p99"],
            "spend_within_budget": qu["spend_within_budget"],
            "refill_within_budget": qu["refill_within_budget"],
        }
    gw = res.get("gateway_overhead", {}).get("results")
    if gw:
        s["gateway"] = {
            "overhead_p50_ms": gw["overhead_p50_ms"],
            "ttfb_overhead_p50_ms": gw["ttfb_overhead_p50_ms"],
            "kill_to_refused_p50_ms": gw["kill_to_refused"]["p50"],
            "kill_to_stream_cut_p50_ms": gw["kill_to_stream_cut"]["p50"],
            "rps_via_gateway": gw["rps_via_gateway"],
            "ratio_rps_via_to_direct": gw["ratio_rps_via_to_direct"],
            "verdicts": gw["verdicts"],
        }
    return s


def print_summary(s: dict[str, Any], profile: str) -> None:
    print(f"\n##### agent-mesh benchmarks, profile {profile}: python -m bench.run --profile {profile}")
    fl = s.get("floor")
    if fl:
        print(
            f"floor: request/reply {fmt_ms(fl['request_reply_p50_ms'])} ms, KV put->republish "
            f"{fmt_ms(fl['kv_put_republish_p50_ms'])} ms, KV put+ack {fmt_ms(fl['kv_put_ack_p50_ms'])} ms, "
            f"raw kill round trip {fmt_ms(fl['kill_ack_raw_p50_ms'])} ms, "
            f"pub->sub {fmt_rate(fl['pubsub_msgs_per_s'])} msgs/s (p50)"
        )
    tables = s.get("kill_latency_by_agents_per_connection") or (
        {"": s["kill_latency"]} if "kill_latency" in s else {}
    )
    for apc, kl in tables.items():
        label = {"": "", "0": ", the instances of a process sharing one connection"}.get(
            apc, f", {apc} agent(s) per connection"
        )
        print_table(
            f"kill -> all acknowledged (ms; ratio to the raw kill round trip of the same run){label}",
            ["N", "procs", "agents/conn", "p50", "p99", "max", "p50/floor", "p99/floor", "resume-all p50"],
            [
                [
                    f"{int(n):,}",
                    r["processes"],
                    r.get("agents_per_connection", 1),
                    fmt_ms(r["all_acked_p50_ms"]),
                    fmt_ms(r["all_acked_p99_ms"]),
                    fmt_ms(r["all_acked_max_ms"]),
                    fmt_ratio(r["p50_over_floor"]),
                    fmt_ratio(r["p99_over_floor"]),
                    fmt_ms(r["resume_all_p50_ms"]),
                ]
                for n, r in sorted(kl.items(), key=lambda kv: int(kv[0]))
            ],
        )
    if "peer_celery" in s:
        print_table(
            "Celery broadcast -> all replied vs mesh kill -> all acked, same N processes (ms, p50 / p99)",
            ["N", "celery p50", "celery p99", "mesh p50", "mesh p99", "mesh/celery", "mesh/floor"],
            [
                [
                    n,
                    fmt_ms(c["celery_p50_ms"]),
                    fmt_ms(c["celery_p99_ms"]),
                    fmt_ms(c["mesh_p50_ms"]),
                    fmt_ms(c["mesh_p99_ms"]),
                    fmt_ratio(c["mesh_over_celery_p50"]),
                    fmt_ratio(c["mesh_over_floor_p50"]),
                ]
                for n, c in s["peer_celery"].items()
            ],
        )
    if "sdk_overhead" in s:
        print_table(
            "SDK hot path, not killed (us per call)",
            ["operation", "us/call", "vs bare call", "of RTT floor"],
            [
                [op, v["us_per_call"], fmt_ratio(v["vs_bare_call"]), v["share_of_rtt_floor"]]
                for op, v in s["sdk_overhead"].items()
            ],
        )
    qu = s.get("quota")
    if qu:
        print(
            f"\nquota leases: spend with a lease {qu['spend_us']} us "
            f"({'met' if qu['spend_within_budget'] else 'MISSED'} <= 5 us; "
            f"{qu['spend_vs_record']}x record()), "
            f"refill p50 {qu['refill_p50_ms']} / p99 {qu['refill_p99_ms']} ms "
            f"({'met' if qu['refill_within_budget'] else 'MISSED'} p50 <= 2 ms)"
        )
    ing = s.get("ingest")
    if ing:
        print(
            f"\ningest: {fmt_rate(ing['sustained_heartbeats_per_s'])} heartbeats/s sustained with 0 dropped "
            f"({fmt_ratio(ing['ratio_to_raw_subscribe'])} of raw subscribe "
            f"{fmt_rate(ing['raw_subscribe_per_s'])}/s); "
            f"controller RSS {ing['rss_mb_at_instances']} MB at {ing['instances']:,} instances; "
            f"last_seen age p99 {ing['last_seen_age_p99_s']} s"
        )
        if ing.get("sustained_with_metrics_per_s") is not None:
            print(
                f"ingest with Prometheus metrics on (scraped every second): "
                f"{fmt_rate(ing['sustained_with_metrics_per_s'])} heartbeats/s "
                f"(on/off {fmt_ratio(ing['metrics_on_to_off'])}); scrape ms {ing['scrape_ms']}"
            )
    gw = s.get("gateway")
    if gw:
        v = gw["verdicts"]
        print(
            f"\ngateway: +{fmt_ms(gw['overhead_p50_ms'])} ms over direct ({v['overhead']}), TTFB "
            f"+{fmt_ms(gw['ttfb_overhead_p50_ms'])} ms ({v['ttfb']}), kill -> refused "
            f"{fmt_ms(gw['kill_to_refused_p50_ms'])} ms ({v['kill_refused']}), kill -> stream cut "
            f"{fmt_ms(gw['kill_to_stream_cut_p50_ms'])} ms ({v['stream_cut']}), "
            f"{fmt_rate(gw['rps_via_gateway'])} requests/s ({v['throughput']}) (p50)"
        )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="run the benchmarks")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    parser.add_argument("--only", nargs="+", choices=ORDER, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    results: dict[str, Any] = {}
    for name in args.only or ORDER:
        results[name] = run_one(name, PROFILES[args.profile][name], out, TIMEOUT[args.profile])
    summary = summarise(results)
    latest = {
        "schema": 1,
        "profile": args.profile,
        "command": f"python -m bench.run --profile {args.profile}",
        "machine": machine_info(),
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "errors": {k: v["error"] for k, v in results.items() if "error" in v},
        "summary": summary,
        **results,
    }
    print_summary(summary, args.profile)
    write_json("latest", latest, out)
    from bench.plot import plot_kill_latency

    plot_kill_latency(latest, out / "kill_latency.png")
    return latest


if __name__ == "__main__":
    main()

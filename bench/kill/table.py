"""What :mod:`bench.kill_latency` prints: a line per run as it finishes, and the table at the end."""

from __future__ import annotations

from typing import Any

from bench.support.report import fmt_ms, fmt_ratio, print_table

__all__ = ["print_progress", "print_results"]

HEADERS = [
    "N", "procs", "agents/conn", "cycles", "record", "observed p50", "observed p99", "ack p50",
    "all-acked p50", "all-acked p99", "max", "p50/floor", "kill() ret p50", "resume-all p50",
    "resume-all p99", "incomplete",
]  # fmt: skip


def print_progress(n: int, res: dict[str, Any]) -> None:
    print(
        f"N={n:,}, {res['agents_per_connection']} agents/connection: all-acked p50 "
        f"{fmt_ms(res['all_acked_ms']['p50'])} ms, p99 {fmt_ms(res['all_acked_ms']['p99'])} ms "
        f"({res['cycles']} cycles, {res['processes']} procs, startup {res['startup_s']} s); "
        f"CPU us per instance per kill cycle {res['cpu_us_per_instance_cycle']}; "
        f"idle CPU us per instance-second {res.get('idle_cpu_us_per_instance_s')}",
        flush=True,
    )


def _row(r: dict[str, Any]) -> list[Any]:
    rt = r.get("ratio_to_floor", {})
    return [
        f"{r['instances']:,}",
        r["processes"],
        r.get("agents_per_connection", 1),
        r["cycles"],
        fmt_ms(r["record_ms"]["p50"]),
        fmt_ms(r["observed_ms"]["p50"]),
        fmt_ms(r["observed_ms"]["p99"]),
        fmt_ms(r["acked_ms"]["p50"]),
        fmt_ms(r["all_acked_ms"]["p50"]),
        fmt_ms(r["all_acked_ms"]["p99"]),
        fmt_ms(r["all_acked_ms"]["max"]),
        fmt_ratio(rt.get("all_acked_p50")),
        fmt_ms(r["kill_call_ms"]["p50"]),
        fmt_ms(r["resume_all_ms"]["p50"]),
        fmt_ms(r["resume_all_ms"]["p99"]),
        r["incomplete_cycles"],
    ]


def print_results(rows_in: list[dict[str, Any]], floor: dict[str, Any]) -> None:
    f = floor["kill_ack_raw_ms"]
    print_table(
        f"kill latency, ms from the kill call (floor: raw kill round trip p50 {fmt_ms(f['p50'])} / p99 "
        f"{fmt_ms(f['p99'])}; request/reply p50 {fmt_ms(floor['request_reply_ms']['p50'])})",
        HEADERS,
        [_row(r) for r in rows_in],
    )

"""What :mod:`bench.ingest` prints: the ingest table and its summary lines."""

from __future__ import annotations

from typing import Any

from bench.support.report import fmt_rate, fmt_ratio, print_table
from bench.support.stats import ratio

__all__ = ["print_ingest"]


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

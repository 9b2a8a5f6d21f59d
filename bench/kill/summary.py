"""The cycles' rows reduced to percentiles, and their ratios to the raw kill floor."""

from __future__ import annotations

from typing import Any

from bench.support.stats import percentiles, ratio

__all__ = ["add_ratios", "summarise"]

_PER_INSTANCE = ("observed_ms", "acked_ms", "resume_observed_ms")


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Percentiles over the cycles (per cycle, or over every instance of every cycle) and the rows."""

    def agg(key: str) -> dict[str, Any]:
        return percentiles([c[key] for c in rows if c[key] is not None])

    def flat(key: str) -> dict[str, Any]:
        return percentiles([v for c in rows for v in c[key]])

    return {
        "cycles": len(rows),
        "incomplete_cycles": sum(1 for c in rows if c["all_acked_ms"] is None),
        "all_acked_ms": agg("all_acked_ms"),
        "kill_call_ms": agg("kill_call_ms"),
        "record_ms": agg("record_ms"),
        "observed_ms": flat("observed_ms"),
        "acked_ms": flat("acked_ms"),
        "resume_all_ms": agg("resume_all_ms"),
        "resume_call_ms": agg("resume_call_ms"),
        "resume_observed_ms": flat("resume_observed_ms"),
        "report_acked_min": min((c["report_acked"] for c in rows), default=None),
        "report_expected_min": min((c["report_expected"] for c in rows), default=None),
        "per_cycle": [
            {k: (round(v, 3) if isinstance(v, float) else v) for k, v in c.items() if k not in _PER_INSTANCE}
            for c in rows
        ],
    }


def add_ratios(res: dict[str, Any], floor: dict[str, Any]) -> None:
    f = floor["kill_ack_raw_ms"]["p50"]
    rep = floor["kv_put_republish_ms"]["p50"]
    res["ratio_to_floor"] = {
        "all_acked_p50": ratio(res["all_acked_ms"]["p50"], f),
        "all_acked_p99": ratio(res["all_acked_ms"]["p99"], f),
        "kill_call_p50": ratio(res["kill_call_ms"]["p50"], f),
        "record_p50_vs_republish": ratio(res["record_ms"]["p50"], rep),
        "resume_all_p50": ratio(res["resume_all_ms"]["p50"], f),
        "floor_kill_ack_raw_p50_ms": f,
    }

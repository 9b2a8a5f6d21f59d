"""How :mod:`bench.integrations` times bare against switched: interleaved runs and paired calls."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench.support.stats import percentiles

__all__ = ["BUDGET_US", "Part", "added_work", "end_to_end_row", "interleaved", "paired_calls"]

BUDGET_US = 5.0


async def interleaved(
    bare: Callable[[], Awaitable[Any]], switched: Callable[[], Awaitable[Any]], runs: int, calls_per_run: int
) -> tuple[list[float], list[float]]:
    """µs per call of each run, bare and switched taking turns so that drift hits both alike."""
    out_bare: list[float] = []
    out_switched: list[float] = []
    for i in range(runs):
        for fn, out in (
            ((bare, out_bare), (switched, out_switched))
            if i % 2
            else (
                (switched, out_switched),
                (bare, out_bare),
            )
        ):
            gc.disable()
            t0 = time.perf_counter_ns()
            await fn()
            dt = time.perf_counter_ns() - t0
            gc.enable()
            out.append(dt / calls_per_run / 1000)
    return out_bare, out_switched


async def paired_calls(
    bare: Callable[[], Awaitable[Any]], switched: Callable[[], Awaitable[Any]], n: int
) -> tuple[list[float], list[float]]:
    """µs of each of ``n`` calls of each, bare and switched taking turns call by call (after a warm-up)."""
    for _ in range(min(n, 200)):
        await bare()
        await switched()
    out_bare: list[float] = []
    out_switched: list[float] = []
    clock = time.perf_counter_ns
    gc.disable()
    try:
        for _ in range(n):
            t0 = clock()
            await bare()
            t1 = clock()
            await switched()
            t2 = clock()
            out_bare.append((t1 - t0) / 1000)
            out_switched.append((t2 - t1) / 1000)
    finally:
        gc.enable()
    return out_bare, out_switched


Part = tuple[str, str, Callable[[], Awaitable[Any]], Callable[[], Awaitable[Any]]]


async def added_work(name: str, parts: list[Part], n: int) -> dict[str, Any]:
    """Added work per model call and per tool call: each (kind, what, bare, switched) part timed call
    by call; ``kind`` is "model", "tool" or "reference" (shown, not counted)."""
    rows = []
    per: dict[str, float] = {"model": 0.0, "tool": 0.0}
    for kind, what, bare, switched in parts:
        b, s = await paired_calls(bare, switched, n)
        added = statistics.median(s) - statistics.median(b)
        if kind in per:
            per[kind] += added
        rows.append(
            {
                "kind": kind,
                "what": what,
                "bare_us": percentiles(b),
                "switched_us": percentiles(s),
                "added_us_median": round(added, 3),
            }
        )
    return {
        "integration": name,
        "added_us_per_tool_call": round(per["tool"], 3),
        "added_us_per_model_call": round(per["model"], 3)
        if any(r["kind"] == "model" for r in rows)
        else None,
        "within_budget": per["tool"] <= BUDGET_US,
        "parts": rows,
    }


def end_to_end_row(
    name: str, unit: str, bare: list[float], switched: list[float], versions: dict[str, Any]
) -> dict[str, Any]:
    paired = [s - b for b, s in zip(bare, switched, strict=True)]
    return {
        "integration": name,
        "unit": unit,
        "bare_us": percentiles(bare),
        "switched_us": percentiles(switched),
        "overhead_us_paired": percentiles(paired),
        "overhead_ratio": round(statistics.median(switched) / statistics.median(bare), 3),
        "versions": versions,
    }

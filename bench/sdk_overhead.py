"""SDK hot-path cost when not killed: ``heartbeat()``, ``checkpoint()``, a guard check, per call.

Against a bare Python function call, and against the network floor (a request/reply round trip
on the same server, same run), since the budget is "never waits on the network; <= 5 us per call".
Sync ``Agent`` (its NATS client on a background loop) and ``AsyncAgent`` are both measured.
``python -m bench.sdk_overhead``.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench.common import bench_server, bench_settings, standard_args
from bench.support.report import envelope, print_table, write_json
from bench.support.stats import ratio

__all__ = ["measure"]

BUDGET_US = 5.0
STOP_S: dict[str, float] = {}
URI = "agent://bench/overhead/hot"


def _bare() -> None:
    return None


def _time_sync(fn: Callable[[], Any], n: int, repeats: int) -> list[float]:
    """µs per call for each of ``repeats`` runs of ``n`` calls."""
    out: list[float] = []
    for _ in range(repeats):
        gc.disable()
        t0 = time.perf_counter_ns()
        for _ in range(n):
            fn()
        dt = time.perf_counter_ns() - t0
        gc.enable()
        out.append(dt / n / 1000)
    return out


async def _time_async(fn: Callable[[], Awaitable[Any]], n: int, repeats: int) -> list[float]:
    out: list[float] = []
    for _ in range(repeats):
        gc.disable()
        t0 = time.perf_counter_ns()
        for _ in range(n):
            await fn()
        dt = time.perf_counter_ns() - t0
        gc.enable()
        out.append(dt / n / 1000)
        await asyncio.sleep(0)  # let the background heartbeat/checkpoint tasks run between runs
    return out


def _row(label: str, runs: list[float], bare_us: float, floor_us: float | None) -> dict[str, Any]:
    med = statistics.median(runs)
    return {
        "op": label,
        "us_per_call_median": round(med, 4),
        "us_per_call_best": round(min(runs), 4),
        "calls_per_s": round(1e6 / med, 0) if med > 0 else None,
        "ratio_to_bare_call": ratio(med, bare_us, 1),
        "share_of_rtt_floor": ratio(med, floor_us, 4),
        "within_budget": med <= BUDGET_US,
        "runs": [round(r, 4) for r in runs],
    }


def _sync_agent(
    url: str, n: int, repeats: int, bare_us: float, floor_us: float | None
) -> list[dict[str, Any]]:
    from agent_sdk import Agent

    settings = bench_settings(url)
    rows: list[dict[str, Any]] = []
    with Agent(URI, instance="sync-0", servers=url, **_agent_kwargs(settings)) as agent:

        @agent.guard
        def tool() -> None:
            return None

        meta = {"batch": 1, "sent": 10}
        rows.append(_row("Agent.heartbeat()", _time_sync(agent.heartbeat, n, repeats), bare_us, floor_us))
        rows.append(
            _row(
                "Agent.heartbeat(metadata=...)",
                _time_sync(lambda: agent.heartbeat(metadata=meta), n, repeats),
                bare_us,
                floor_us,
            )
        )
        state = {"batch": 7}
        rows.append(
            _row(
                "Agent.checkpoint(state)",
                _time_sync(lambda: agent.checkpoint(state), n, repeats),
                bare_us,
                floor_us,
            )
        )
        rows.append(_row("@agent.guard call", _time_sync(tool, n, repeats), bare_us, floor_us))
        rows.append(_row("agent.killed", _time_sync(lambda: agent.killed, n, repeats), bare_us, floor_us))
    return rows


async def _async_agent(
    url: str, n: int, repeats: int, bare_us: float, floor_us: float | None
) -> list[dict[str, Any]]:
    from agent_sdk import AsyncAgent

    settings = bench_settings(url)
    rows: list[dict[str, Any]] = []
    agent = await AsyncAgent(URI, instance="async-0", servers=url, **_agent_kwargs(settings)).start()
    try:

        @agent.guard
        async def tool() -> None:
            return None

        async def bare_async() -> None:
            return None

        bare_async_us = statistics.median(await _time_async(bare_async, n, repeats))
        rows.append(
            {
                "op": "bare `await coro()`",
                "us_per_call_median": round(bare_async_us, 4),
                "calls_per_s": round(1e6 / bare_async_us),
            }
        )
        rows.append(
            _row(
                "await AsyncAgent.heartbeat()",
                await _time_async(agent.heartbeat, n, repeats),
                bare_us,
                floor_us,
            )
        )
        state = {"batch": 7}

        async def cp() -> None:
            await agent.checkpoint(state)

        rows.append(
            _row("await AsyncAgent.checkpoint(state)", await _time_async(cp, n, repeats), bare_us, floor_us)
        )
        rows.append(_row("await @agent.guard coro", await _time_async(tool, n, repeats), bare_us, floor_us))
    finally:
        await asyncio.sleep(0.2)  # let the checkpoint writer go idle before stopping
        t0 = time.perf_counter()
        try:
            # bounded: on Python 3.11 a cancel can be swallowed inside nats-py's wait_for, and
            # AgentCore.close() awaits its background tasks without a timeout (reported, issue 3)
            await asyncio.wait_for(agent.stop(), 15)
        except TimeoutError:
            rows.append({"op": "AsyncAgent.stop() did not return within 15 s", "us_per_call_median": None})
        STOP_S["async"] = round(time.perf_counter() - t0, 3)
    return rows


def _agent_kwargs(settings: Any) -> dict[str, Any]:
    """Extra keyword arguments the SDK accepts for a namespace prefix (if it takes one)."""
    import inspect

    from agent_sdk import Agent

    params = inspect.signature(Agent).parameters
    if "settings" in params:
        return {"settings": settings}
    if "prefix" in params:
        return {"prefix": settings.prefix}
    return {}


def measure(url: str, n: int, repeats: int, floor_us: float | None) -> dict[str, Any]:
    bare = _time_sync(_bare, n, repeats)
    bare_us = statistics.median(bare)
    rows = [
        {
            "op": "bare function call",
            "us_per_call_median": round(bare_us, 4),
            "calls_per_s": round(1e6 / bare_us),
        }
    ]
    rows += _sync_agent(url, n, repeats, bare_us, floor_us)
    rows += asyncio.run(_async_agent(url, n, repeats, bare_us, floor_us))
    return {"bare_call_us": round(bare_us, 4), "budget_us": BUDGET_US, "rows": rows, "stop_seconds": STOP_S}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from bench.floor import request_reply
    from bench.support.stats import percentiles

    parser = standard_args("SDK hot-path overhead when not killed")
    parser.add_argument("--n", type=int, default=200_000, help="calls per timed run")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per operation (median reported)")
    args = parser.parse_args(argv)
    with bench_server(args.nats_url) as url:
        rr = percentiles(asyncio.run(request_reply(url, 200)))
        floor_us = rr["p50"] * 1000 if rr["p50"] else None
        res = measure(url, args.n, args.repeats, floor_us)
    res["floor"] = {"request_reply_ms": rr}
    table = [
        [
            r["op"],
            f"{r['us_per_call_median']:.3f}" if r.get("us_per_call_median") is not None else "-",
            f"{r['calls_per_s']:,.0f}" if r.get("calls_per_s") else "-",
            f"{r['ratio_to_bare_call']:.1f}x" if r.get("ratio_to_bare_call") else "-",
            f"{r['share_of_rtt_floor']:.4f}" if r.get("share_of_rtt_floor") else "-",
            ("yes" if r["within_budget"] else "NO") if "within_budget" in r else "-",
        ]
        for r in res["rows"]
    ]
    print_table(
        f"SDK overhead per call, not killed (median of {args.repeats} x {args.n:,} calls; "
        f"floor: request/reply {rr['p50']} ms)",
        ["operation", "us/call", "calls/s", "vs bare call", "of RTT floor", f"<= {BUDGET_US:g} us"],
        table,
    )
    data = envelope("sdk_overhead", {"n": args.n, "repeats": args.repeats}, res)
    write_json("sdk_overhead", data, args.out)
    return data


if __name__ == "__main__":
    main()

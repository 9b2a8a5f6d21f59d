"""Quota leases: the spend hot path with a lease in hand, and the cost of a refill.

Budgets (README, "Benchmarks"): ``spend()`` with a lease in hand <= 5 us per call; a lease refill <= 2 ms p50.
``record()`` and ``heartbeat()`` are timed in the same run for comparison, and the refill against
the raw request/reply floor on the same server. The controller runs in its own process, as in
production. ``python -m bench.quota [--n 200000 --repeats 5 --refills 500]``.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import bench_prefix, bench_server, bench_settings, standard_args
from bench.support.procs import Children, spawn_controller
from bench.support.report import envelope, print_table, write_json
from bench.support.stats import percentiles, ratio

__all__ = ["main"]

SPEND_BUDGET_US = 5.0
REFILL_BUDGET_MS = 2.0
HOT = "agent://bench/quota/hot"
REFILL = "agent://bench/quota/refill"


def _per_call_us(fn: Any, n: int, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        gc.disable()
        t0 = time.perf_counter_ns()
        for _ in range(n):
            fn()
        out.append((time.perf_counter_ns() - t0) / n / 1000)
        gc.enable()
    return out


async def _setup(settings: Any) -> None:
    from mesh.client.operator import AsyncMesh
    from mesh.transport.provision import provision

    async with AsyncMesh(settings) as mesh:
        await provision(mesh.connection.js, mesh.connection.ns)
        await mesh.set_policy("bench-hot", HOT, ["work<=1e15"])
        await mesh.set_policy("bench-refill", REFILL, ["units<=1e15/1d"])


def _hot_path(settings: Any, n: int, repeats: int) -> list[dict[str, Any]]:
    from agent_sdk import Agent

    rows = []
    with Agent(HOT, instance="hot-0", settings=settings, hard_kill=False) as agent:
        agent.spend(work=1)  # the first spend fetches the lease (half of 1e15: never runs out here)
        timed = {
            "Agent.spend(work=1), lease in hand": lambda: agent.spend(work=1),
            "Agent.record(work=1)": lambda: agent.record(work=1),
            "Agent.heartbeat()": agent.heartbeat,
        }
        for label, fn in timed.items():
            runs = _per_call_us(fn, n, repeats)
            median = round(statistics.median(runs), 4)
            runs_us = [round(r, 4) for r in runs]
            rows.append({"op": label, "n": n, "repeats": repeats, "us_median": median, "us_runs": runs_us})
        assert agent._core.quota.wallet.granted.get("work") == 5e14, "the hot path refilled: not measured"
    return rows


def _sync_refills(settings: Any, refills: int) -> list[float]:
    """Milliseconds of ``Agent.spend()`` when the lease is empty: loop-thread hop + request + CAS write."""
    from agent_sdk import Agent

    out = []
    with Agent(REFILL, instance="sync-refill", settings=settings, hard_kill=False) as agent:
        wallet = agent._core.quota.wallet
        agent.spend(units=1)
        for _ in range(refills):
            wallet.drop("units")  # empty the lease, so that the next spend must refill
            t0 = time.perf_counter()
            agent.spend(units=1)
            out.append((time.perf_counter() - t0) * 1000)
    return out


async def _refills(settings: Any, refills: int) -> list[float]:
    """Milliseconds of one ``QuotaClient.refill`` round trip (what the SDK and the gateway share)."""
    from agent_sdk import AsyncAgent

    out = []
    agent = await AsyncAgent(REFILL, instance="refill-0", settings=settings, hard_kill=False).start()
    try:
        client = agent._core.quota.client
        for _ in range(20):  # warm up: the controller caches the ledger, pydantic builds its models
            await client.refill("units", 1)
        for _ in range(refills):
            t0 = time.perf_counter()
            reply = await client.refill("units", 1)
            out.append((time.perf_counter() - t0) * 1000)
            assert reply is not None and reply.outcome == "granted", reply
    finally:
        await agent.stop()
    return out


async def _wait_for_controller(settings: Any) -> None:
    from agent_sdk import AsyncAgent

    agent = await AsyncAgent(REFILL, instance="probe", settings=settings, hard_kill=False).start()
    try:
        deadline = time.monotonic() + 30
        while await agent._core.quota.client.refill("units", 1) is None:
            if time.monotonic() > deadline:
                raise SystemExit("the controller never answered a lease request")
    finally:
        await agent.stop()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from bench.floor import request_reply

    parser = standard_args("Quota leases: spend hot path and refill latency")
    parser.add_argument("--n", type=int, default=200_000, help="calls per timed hot-path run")
    parser.add_argument("--repeats", type=int, default=5, help="timed hot-path runs (median reported)")
    parser.add_argument("--refills", type=int, default=500, help="refills timed")
    args = parser.parse_args(argv)
    prefix = bench_prefix()
    with bench_server(args.nats_url) as url, Children() as kids, tempfile.TemporaryDirectory() as tmp:
        settings = bench_settings(url, prefix)
        asyncio.run(_setup(settings))
        spawn_controller(kids, url, prefix, log=Path(tmp) / "controller.log")
        asyncio.run(_wait_for_controller(settings))
        floor = percentiles(asyncio.run(request_reply(url, max(50, args.refills))))
        hot = _hot_path(settings, args.n, args.repeats)
        refill = percentiles(asyncio.run(_refills(settings, args.refills)))
        sync_refill = percentiles(_sync_refills(settings, args.refills))
    spend_us = hot[0]["us_median"]
    results = {
        "hot_path": hot,
        "spend_us": spend_us,
        "spend_budget_us": SPEND_BUDGET_US,
        "spend_within_budget": spend_us <= SPEND_BUDGET_US,
        "spend_vs_record": ratio(spend_us, hot[1]["us_median"]),
        "refill_ms": refill,
        "sync_spend_refill_ms": sync_refill,
        "refill_budget_ms": REFILL_BUDGET_MS,
        "refill_within_budget": (refill["p50"] or 0) <= REFILL_BUDGET_MS,
        "sync_refill_within_budget": (sync_refill["p50"] or 0) <= REFILL_BUDGET_MS,
        "floor_request_reply_ms": floor,
        "refill_vs_floor": ratio(refill["p50"], floor["p50"]),
    }

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    rows = [[r["op"], f"{r['us_median']:.3f} us", f"N={r['n']:,} x {r['repeats']}", "-", "-"] for r in hot]
    rows[0][3] = f"<= {SPEND_BUDGET_US:g} us"
    rows[0][4] = verdict(results["spend_within_budget"])
    for label, p, ok in (
        ("refill round trip (QuotaClient.refill)", refill, results["refill_within_budget"]),
        ("Agent.spend() that must refill (sync)", sync_refill, results["sync_refill_within_budget"]),
        ("floor: core request/reply", floor, True),
    ):
        budget = f"p50 <= {REFILL_BUDGET_MS:g} ms" if "floor" not in label else "-"
        rows.append(
            [
                label,
                f"p50 {p['p50']} / p99 {p['p99']} ms",
                f"N={p['n']}",
                budget,
                verdict(ok) if budget != "-" else "-",
            ]
        )
    print_table(
        "Quota leases (controller in its own process)", ["what", "measured", "N", "budget", "verdict"], rows
    )
    data = envelope("quota", {"n": args.n, "repeats": args.repeats, "refills": args.refills}, results)
    write_json("quota", data, args.out)
    return data


if __name__ == "__main__":
    main()

"""Policy latency: the breaching heartbeat -> the controller's kill record -> every instance halted.

One process holds the controller and N real ``AsyncAgent`` instances of a fresh agent per cycle,
parked in ``await agent.sleep()``. A policy ``units<=LIMIT`` covers ``agent://bench/policy/*``
(action pause). Per cycle, one instance records ``units=LIMIT+1`` and publishes its heartbeat at
once; times from just before that publish:

- ``record``: the policy's kill record arrives, republished, on an observer connection;
- ``all_halted``: the N-th ``halted`` acknowledgement arrives on the observer connection.

Ratio to the raw kill floor (:func:`bench.floor.kill_ack_raw`) on the same server in the same run.
``python -m bench.policy_latency --n 1 4 --cycles 10``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import nats
from nats.aio.msg import Msg

from bench.common import bench_server, bench_settings, standard_args
from bench.support.report import envelope, fmt_ms, fmt_ratio, print_table, write_json
from bench.support.stats import percentiles, ratio

LIMIT = 10.0


async def _cycle(settings: Any, nc: Any, n: int, cycle: int) -> dict[str, float] | None:
    from agent_sdk import AsyncAgent

    name = f"c{n}x{cycle}"
    uri = f"agent://bench/policy/{name}"
    agents = [
        AsyncAgent(uri, instance=f"i{i}", settings=settings, hard_kill=False, heartbeat_interval=1.0)
        for i in range(n)
    ]
    for a in agents:
        await a.start()
    parked = [asyncio.create_task(_park(a)) for a in agents]
    times: dict[str, float] = {}
    halted: list[float] = []
    done = asyncio.Event()

    async def on_record(_msg: Msg) -> None:
        times.setdefault("record", time.perf_counter())

    async def on_halted(_msg: Msg) -> None:
        halted.append(time.perf_counter())
        if len(halted) == n:
            done.set()

    prefix = settings.prefix
    subs = [
        await nc.subscribe(f"{prefix}.ctl.bench.policy.{name}", cb=on_record),
        await nc.subscribe(f"{prefix}.audit.bench.policy.{name}.*.halted", cb=on_halted),
    ]
    await nc.flush()
    await asyncio.sleep(0.3)  # let the controller hear every instance (baseline samples)
    try:
        core = agents[0]._core
        agents[0].record(units=LIMIT + 1)
        t0 = time.perf_counter()
        await core.timers.send_heartbeat()  # the breaching heartbeat, now rather than at the next tick
        try:
            await asyncio.wait_for(done.wait(), 10)
        except TimeoutError:
            return None
        return {
            "record": (times.get("record", float("nan")) - t0) * 1000,
            "all_halted": (halted[-1] - t0) * 1000,
        }
    finally:
        for s in subs:
            await s.unsubscribe()
        for t in parked:
            t.cancel()
        for a in agents:
            with contextlib.suppress(Exception):
                await a.stop()


async def _park(agent: Any) -> None:
    with contextlib.suppress(Exception):
        while True:
            await agent.sleep(60)


async def measure(url: str, ns: list[int], cycles: int) -> dict[str, Any]:
    from bench.floor import kill_ack_raw
    from controller import ControllerOptions
    from controller.runner import Controller
    from mesh.client.operator import AsyncMesh
    from mesh.transport.connection import Connection
    from mesh.transport.provision import provision

    floor = percentiles(await kill_ack_raw(url, 100))
    settings = bench_settings(url)
    async with Connection(settings, name="bench-provision") as conn:
        await provision(conn.js, conn.ns)
    stop = asyncio.Event()
    ctl = Controller(settings, ControllerOptions(flush_every=0.05, sweep_every=0.5, policy_reload_every=0.2))
    task = asyncio.create_task(ctl.run(stop))
    nc = await nats.connect(url, name="bench-observer")
    out: dict[str, Any] = {"floor_kill_ack_raw_ms": floor, "by_n": {}}
    try:
        async with AsyncMesh(settings) as mesh:
            await mesh.set_policy("bench", "agent://bench/policy/*", [f"units<={LIMIT:g}"], action="pause")
        deadline = time.monotonic() + 20
        while not (ctl.ingesting and ctl.stats.policies == 1) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for n in ns:
            samples = [s for c in range(cycles) if (s := await _cycle(settings, nc, n, c)) is not None]
            rec = percentiles([s["record"] for s in samples])
            allh = percentiles([s["all_halted"] for s in samples])
            out["by_n"][str(n)] = {
                "cycles": cycles,
                "timeouts": cycles - len(samples),
                "record_ms": rec,
                "all_halted_ms": allh,
                "all_halted_p50_vs_floor": ratio(allh["p50"], floor["p50"]),
            }
    finally:
        await nc.close()
        stop.set()
        await asyncio.wait_for(task, 20)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = standard_args(__doc__ or "")
    parser.add_argument("--n", type=int, nargs="+", default=[1, 4], help="instances of the breaching agent")
    parser.add_argument("--cycles", type=int, default=10)
    args = parser.parse_args(argv)
    with bench_server(args.nats_url) as url:
        results = asyncio.run(measure(url, args.n, args.cycles))
    rows = [
        [
            n,
            r["cycles"] - r["timeouts"],
            fmt_ms(r["record_ms"]["p50"]),
            fmt_ms(r["all_halted_ms"]["p50"]),
            fmt_ms(r["all_halted_ms"]["p99"]),
            fmt_ratio(r["all_halted_p50_vs_floor"]),
        ]
        for n, r in results["by_n"].items()
    ]
    print_table(
        f"breaching heartbeat -> all halted (ms; floor kill+ack p50 "
        f"{fmt_ms(results['floor_kill_ack_raw_ms']['p50'])})",
        ["N", "ok", "record p50", "halted p50", "halted p99", "vs floor"],
        rows,
    )
    data = envelope("policy_latency", {"n": args.n, "cycles": args.cycles, "limit": LIMIT}, results)
    write_json("policy_latency", data, args.out)
    return data


if __name__ == "__main__":
    main()

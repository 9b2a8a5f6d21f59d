"""Kill latency at fleet scale: kill call -> record written -> each instance observed -> each ack.

N instances (real ``AsyncAgent``s, each with its own kill state) spread over P
fleet processes (:mod:`bench._fleet`), parked in ``await agent.sleep()``. Agents per NATS
connection (``--agents-per-connection``): 0 = the instances of one fleet process share one
connection (``AsyncAgent(connection=...)``), 1 = each has its own; several values run each N once
per value and report every variant (``by_n`` holds the first). The controller runs in
its own process (the operator's ``kill`` waits for the instances the controller knows as live).
Repeated kill/resume cycles through the operator API (``AsyncMesh.kill`` / ``resume``). Per cycle,
all wall-clock times from just before the ``kill`` call:

- ``record``: the republished kill record arrives on an observer connection (written + fanned out);
- ``observed``: each instance's SDK applies the push (noted inside the fleet processes);
- ``acked``: each ``halted`` acknowledgement arrives on the operator side (observer connection);
- ``all_acked``: the last of the N acknowledgements; ``kill_call``: ``kill()`` returns its report;
- ``resume_all``: from the ``resume`` call to the N-th ``resumed`` event.

CPU per process kind (operator, controller, fleet, nats-server; from /proc via psutil): per
instance per kill/resume cycle (``cpu_us_per_instance_cycle``), and, sampled for ``--idle-s``
seconds before the cycles with no kill in flight, per instance-second (``idle_cpu_us_per_instance_s``).

Ratios are to the raw kill floor (:func:`bench.floor.kill_ack_raw`: KV put -> republish -> a
JetStream-acked reply -> seen), measured on the same server in the same run.
``python -m bench.kill_latency --n 1 10 100 1000``; the parts are in :mod:`bench.kill`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from bench.common import bench_server, standard_args
from bench.kill.measure import measure, measure_floor_for_kill
from bench.kill.summary import add_ratios
from bench.kill.table import print_progress, print_results
from bench.support.report import envelope, write_json

__all__ = ["main", "measure"]


def cycles_for(n: int, base: int) -> int:
    """Fewer cycles at large N: each costs a full fan-out; at least 3."""
    return max(3, min(base, base * 100 // max(n, 100)))


async def amain(args: Any) -> dict[str, Any]:
    variants: dict[int, list[dict[str, Any]]] = {v: [] for v in args.agents_per_connection}
    with bench_server(args.nats_url) as url:
        floor = await measure_floor_for_kill(url, args.floor_n)
        for n in args.n:
            for v_i, apc in enumerate(args.agents_per_connection):
                biggest = n == max(args.n) and v_i == 0
                prof = args.profile if (args.profile and biggest) else None
                spy = args.py_spy / f"n{n}" if (args.py_spy and biggest) else None
                res = await measure(
                    url,
                    instances=n,
                    processes=args.processes,
                    cycles=cycles_for(n, args.cycles),
                    floor_n=0,
                    mode=args.mode,
                    guarded=args.guarded,
                    profile=prof,
                    py_spy=spy,
                    agents_per_connection=apc,
                    idle_s=args.idle_s,
                )
                add_ratios(res, floor)
                variants[apc].append(res)
                print_progress(n, res)
        floor_after = await measure_floor_for_kill(url, args.floor_n)
    first = args.agents_per_connection[0]
    for results in variants.values():
        print_results(results, floor)
    return {
        "floor": floor,
        "floor_after": floor_after,
        "agents_per_connection": first,
        "by_n": {str(r["instances"]): r for r in variants[first]},
        "by_agents_per_connection": {
            str(apc): {str(r["instances"]): r for r in rs} for apc, rs in variants.items()
        },
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = standard_args("kill latency at fleet scale")
    parser.add_argument("--n", type=int, nargs="+", default=[1, 10, 100, 1000])
    parser.add_argument("--processes", type=int, default=None, help="fleet processes (default: by N)")
    parser.add_argument("--cycles", type=int, default=20, help="kill/resume cycles at N <= 100 (fewer above)")
    parser.add_argument("--mode", choices=["pause", "raise"], default="pause")
    parser.add_argument("--guarded", action="store_true", help="instances park in a guarded coroutine")
    parser.add_argument("--floor-n", type=int, default=200)
    parser.add_argument(
        "--idle-s", type=float, default=5.0, help="idle CPU sampling per N before the cycles, s (0: off)"
    )
    parser.add_argument(
        "--agents-per-connection",
        type=int,
        nargs="+",
        default=[0],
        help="agents per NATS connection in a fleet process (0: all; 1: one each); several: one run each",
    )
    parser.add_argument(
        "--profile", type=Path, default=None, help="pyinstrument the operator side at the largest N"
    )
    parser.add_argument(
        "--py-spy",
        type=Path,
        default=None,
        help="py-spy the operator, fleet process 0 and the controller at the largest N (dir)",
    )
    args = parser.parse_args(argv)
    results = asyncio.run(amain(args))
    data = envelope(
        "kill_latency",
        {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "out"},
        results,
    )
    write_json("kill_latency", data, args.out)
    return data


if __name__ == "__main__":
    main()

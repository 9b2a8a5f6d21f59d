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
``python -m bench.kill_latency --n 1 10 100 1000``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import nats
from nats.aio.msg import Msg

from bench.common import (
    Children,
    PySpy,
    bench_prefix,
    bench_server,
    bench_settings,
    cpu_seconds,
    envelope,
    fmt_ms,
    fmt_ratio,
    nats_server_pids,
    percentiles,
    print_table,
    ratio,
    standard_args,
    write_json,
)

__all__ = ["default_processes", "measure", "measure_floor_for_kill"]

GRACE = 600.0  # no escalation during a bench: every instance is parked at a safe point anyway


def default_processes(n: int, cores: int = 2) -> int:
    """Fleet processes for N instances: 1 for 1, then up to 4 per core, ~1,250 instances each at most."""
    if n <= 1:
        return 1
    return max(1, min(n, max(2 * cores, math.ceil(n / 1250)), 4 * cores))


async def measure_floor_for_kill(url: str, n: int) -> dict[str, Any]:
    from bench.floor import kill_ack_raw, kv_put, request_reply

    acks, repubs = await kv_put(url, n)
    return {
        "kill_ack_raw_ms": percentiles(await kill_ack_raw(url, n)),
        "request_reply_ms": percentiles(await request_reply(url, n)),
        "kv_put_republish_ms": percentiles(repubs),
        "kv_put_ack_ms": percentiles(acks),
    }


class Observer:
    """A separate connection in the operator's process that timestamps what the operator sees."""

    def __init__(self) -> None:
        self.record: list[float] = []
        self.halted: list[float] = []
        self.resumed: list[float] = []
        self.halted_evt = asyncio.Event()
        self.resumed_evt = asyncio.Event()
        self.expect = 0
        self.nc: Any = None

    async def start(self, url: str, prefix: str) -> None:
        self.nc = await nats.connect(url, name="bench-observer")

        async def on_record(_msg: Msg) -> None:
            self.record.append(time.time())

        async def on_halted(_msg: Msg) -> None:
            self.halted.append(time.time())
            if len(self.halted) >= self.expect:
                self.halted_evt.set()

        async def on_resumed(_msg: Msg) -> None:
            self.resumed.append(time.time())
            if len(self.resumed) >= self.expect:
                self.resumed_evt.set()

        await self.nc.subscribe(f"{prefix}.ctl.>", cb=on_record)
        await self.nc.subscribe(f"{prefix}.audit.*.*.*.*.halted", cb=on_halted, pending_msgs_limit=2_000_000)
        await self.nc.subscribe(
            f"{prefix}.audit.*.*.*.*.resumed", cb=on_resumed, pending_msgs_limit=2_000_000
        )
        await self.nc.flush()

    def reset(self, expect: int) -> None:
        self.record, self.halted, self.resumed = [], [], []
        self.halted_evt, self.resumed_evt = asyncio.Event(), asyncio.Event()
        self.expect = expect

    async def close(self) -> None:
        if self.nc is not None:
            await self.nc.close()


async def _request_json(nc: Any, subject: str, timeout: float = 10.0) -> dict[str, Any]:
    msg = await nc.request(subject, b"", timeout=timeout)
    return dict(json.loads(msg.data))


async def _count_active(conn: Any, uri: str) -> int:
    from mesh.protocol.models import InstanceStatus
    from mesh.protocol.target import parse_target
    from mesh.transport.kvscan import scan_latest

    entries = await scan_latest(
        conn, conn.ns.instances_bucket, conn.ns.instance_key_filter(parse_target(uri))
    )
    active = 0
    for e in entries.values():
        with contextlib.suppress(Exception):
            if InstanceStatus.model_validate_json(e.value).status.value == "active":
                active += 1
    return active


async def _wait_active(conn: Any, uri: str, n: int, timeout: float) -> tuple[int, float]:
    t0 = time.perf_counter()
    count = 0
    while time.perf_counter() - t0 < timeout:
        with contextlib.suppress(Exception):
            count = await _count_active(conn, uri)
        if count >= n:
            break
        await asyncio.sleep(0.1 if n < 1000 else 0.3)
    return count, time.perf_counter() - t0


def _shares(instances: int, procs_n: int) -> list[int]:
    share = instances // procs_n
    return [share if p < procs_n - 1 else instances - share * (procs_n - 1) for p in range(procs_n)]


def _ms(ts: list[float], t0: float) -> list[float]:
    return [(t - t0) * 1000 for t in ts]


async def measure(
    url: str,
    *,
    instances: int,
    processes: int | None = None,
    cycles: int = 10,
    warmup: int = 1,
    floor_n: int = 200,
    mode: str = "pause",
    guarded: bool = False,
    wait: float | None = None,
    heartbeat_interval: float = 2.0,
    profile: Path | None = None,
    py_spy: Path | None = None,
    agents_per_connection: int = 0,
    idle_s: float = 5.0,
) -> dict[str, Any]:
    """Start a controller and a fleet of ``instances`` on the server at ``url``; run the cycles."""
    from mesh.client.operator import AsyncMesh
    from mesh.transport.connection import Connection
    from mesh.transport.provision import provision

    procs_n = processes or default_processes(instances)
    prefix = bench_prefix()
    settings = bench_settings(url, prefix)
    uri = f"agent://bench/kl/n{instances}"
    run_id = prefix
    wait = wait if wait is not None else max(5.0, instances / 200)
    conn = await Connection.open(settings, name="bench-kill-operator")
    await provision(conn.js, conn.ns)
    obs = Observer()
    await obs.start(url, prefix)
    per_proc = math.ceil(instances / procs_n)
    apc = min(agents_per_connection or per_proc, per_proc)
    out: dict[str, Any] = {
        "instances": instances,
        "processes": procs_n,
        "mode": mode,
        "guarded": guarded,
        "agents_per_connection": apc,
        "agent_connections": sum(math.ceil(c / apc) for c in _shares(instances, procs_n) if c),
    }
    cycles_out: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="mesh-bench-kill-") as tmpdir, Children() as kids:
        tmp = Path(tmpdir)
        ctl = kids.spawn(
            "-m", "bench._controller_proc", url, prefix, stdout=subprocess.PIPE, log=tmp / "controller.log"
        )
        assert ctl.stdout is not None
        await asyncio.get_running_loop().run_in_executor(None, ctl.stdout.readline)
        share = instances // procs_n
        t_start = time.perf_counter()
        fleet_pids: list[int] = []
        for p in range(procs_n):
            count = share if p < procs_n - 1 else instances - share * (procs_n - 1)
            fleet_pids.append(
                kids.spawn(
                    "-m",
                    "bench._fleet",
                    url,
                    prefix,
                    run_id,
                    str(p),
                    "--uri",
                    uri,
                    "--first",
                    str(p * share),
                    "--count",
                    str(count),
                    "--mode",
                    mode,
                    "--heartbeat-interval",
                    str(heartbeat_interval),
                    "--agents-per-connection",
                    str(agents_per_connection),
                    *(["--guarded"] if guarded else []),
                    log=tmp / f"fleet{p}.log",
                ).pid
            )
        # every instance started (connected, subscribed, read its records, reported started)
        deadline = time.monotonic() + 60 + instances * 0.05
        ready = 0
        statuses: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            statuses = []
            for p in range(procs_n):
                with contextlib.suppress(Exception):
                    statuses.append(await _request_json(obs.nc, f"bench.fleet.{run_id}.{p}.status", 2.0))
            ready = sum(s["ready"] for s in statuses)
            if ready >= instances or any(s["failed"] for s in statuses):
                break
            await asyncio.sleep(0.25)
        out["startup_s"] = round(time.perf_counter() - t_start, 2)
        out["ready"] = ready
        if ready < instances:
            errors = [e for s in statuses for e in s.get("errors", [])]
            raise RuntimeError(f"only {ready}/{instances} instances started: {errors[:3]} (logs in {tmp})")
        active, waited = await _wait_active(conn, uri, instances, 30 + instances * 0.01)
        out["controller_saw_active"] = active
        out["controller_active_wait_s"] = round(waited, 2)
        mesh = AsyncMesh(settings, connection=conn)
        await mesh.connect()
        profiler: Any = None
        spy: PySpy | None = None
        cpu_pids = {
            "operator": [os.getpid()],
            "controller": [ctl.pid],
            "fleet": fleet_pids,
            "nats_server": nats_server_pids(),
        }
        if idle_s > 0:
            # What an idle instance costs (heartbeats, re-reads, timers): no kill in flight.
            idle0 = cpu_seconds(cpu_pids)
            await asyncio.sleep(idle_s)
            idle1 = cpu_seconds(cpu_pids)
            out["idle_s"] = idle_s
            out["idle_cpu_us_per_instance_s"] = {
                k: round((idle1[k] - idle0.get(k, 0.0)) * 1e6 / (instances * idle_s), 1) for k in idle1
            }
        cpu0: dict[str, float] = {}
        for c in range(warmup + cycles):
            if c == warmup:
                cpu0 = cpu_seconds(cpu_pids)
            if py_spy is not None and c == warmup:
                spy = PySpy(py_spy, {"operator": os.getpid(), "fleet0": fleet_pids[0], "controller": ctl.pid})
                spy.start()
                await asyncio.sleep(1.0)  # let py-spy attach
            if profile is not None and c == warmup:
                from pyinstrument import Profiler

                profiler = Profiler(interval=0.0005, async_mode="enabled")
                profiler.start()
            obs.reset(instances)
            await obs.nc.flush()
            t0 = time.time()
            report = await mesh.kill(uri, reason="bench", grace=GRACE, wait=wait)
            t_ret = time.time()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(obs.halted_evt.wait(), wait)
            halted = list(obs.halted)
            record = list(obs.record)
            t_r0 = time.time()
            rreport = await mesh.resume(uri, reason="bench", wait=wait)
            t_rret = time.time()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(obs.resumed_evt.wait(), wait)
            resumed = list(obs.resumed)
            if profiler is not None and c == warmup:
                profiler.stop()
            seen: list[float] = []
            cleared: list[float] = []
            for p in range(procs_n):
                with contextlib.suppress(Exception):
                    got = await _request_json(obs.nc, f"bench.fleet.{run_id}.{p}.collect", 10.0)
                    seen += got["observed"]
                    cleared += got["resumed"]
            active, waited = await _wait_active(conn, uri, instances, 10 + instances * 0.002)
            if c < warmup:
                continue
            acked_ms = _ms(halted, t0)
            cycles_out.append(
                {
                    "record_ms": _ms(record[:1], t0)[0] if record else None,
                    "observed_ms": _ms(seen, t0),
                    "acked_ms": acked_ms,
                    "all_acked_ms": max(acked_ms) if len(halted) >= instances else None,
                    "acks": len(halted),
                    "kill_call_ms": (t_ret - t0) * 1000,
                    "report_acked": report.acked,
                    "report_expected": report.expected,
                    "report_missing": len(report.missing),
                    "resume_call_ms": (t_rret - t_r0) * 1000,
                    "resume_all_ms": max(_ms(resumed, t_r0)) if len(resumed) >= instances else None,
                    "resume_observed_ms": _ms(cleared, t_r0),
                    "resumes": len(resumed),
                    "resume_report_acked": rreport.acked,
                    "active_before_next": active,
                    "settle_s": round(waited, 3),
                }
            )
        cpu1 = cpu_seconds(cpu_pids)
        measured = max(1, cycles)
        out["cpu_ms_per_cycle"] = {k: round((cpu1[k] - cpu0.get(k, 0.0)) * 1000 / measured, 1) for k in cpu1}
        out["cpu_us_per_instance_cycle"] = {
            k: round(v * 1000 / instances, 1) for k, v in out["cpu_ms_per_cycle"].items()
        }
        if spy is not None:
            out["py_spy"] = spy.stop()
        if profiler is not None and profile is not None:
            profile.parent.mkdir(parents=True, exist_ok=True)
            profile.write_text(profiler.output_text(unicode=False, color=False, show_all=False))
            out["profile"] = str(profile)
        t_down = time.perf_counter()
        await obs.nc.publish(f"bench.fleet.{run_id}.stop", b"")
        await obs.nc.flush()
        for proc in list(kids.procs):
            if proc is not ctl:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    await asyncio.get_running_loop().run_in_executor(None, proc.wait, 60)
        kids.stop_all()
        out["teardown_s"] = round(time.perf_counter() - t_down, 2)
    await obs.close()
    await conn.close()

    def agg(key: str) -> dict[str, Any]:
        vals = [c[key] for c in cycles_out if c[key] is not None]
        return percentiles(vals)

    def flat(key: str) -> dict[str, Any]:
        return percentiles([v for c in cycles_out for v in c[key]])

    out.update(
        {
            "cycles": len(cycles_out),
            "incomplete_cycles": sum(1 for c in cycles_out if c["all_acked_ms"] is None),
            "all_acked_ms": agg("all_acked_ms"),
            "kill_call_ms": agg("kill_call_ms"),
            "record_ms": agg("record_ms"),
            "observed_ms": flat("observed_ms"),
            "acked_ms": flat("acked_ms"),
            "resume_all_ms": agg("resume_all_ms"),
            "resume_call_ms": agg("resume_call_ms"),
            "resume_observed_ms": flat("resume_observed_ms"),
            "report_acked_min": min((c["report_acked"] for c in cycles_out), default=None),
            "report_expected_min": min((c["report_expected"] for c in cycles_out), default=None),
            "per_cycle": [
                {
                    k: (round(v, 3) if isinstance(v, float) else v)
                    for k, v in c.items()
                    if k not in ("observed_ms", "acked_ms", "resume_observed_ms")
                }
                for c in cycles_out
            ],
        }
    )
    if floor_n:
        out["floor"] = await measure_floor_for_kill(url, floor_n)
    return out


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


def print_results(rows_in: list[dict[str, Any]], floor: dict[str, Any]) -> None:
    rows = []
    for r in rows_in:
        rt = r.get("ratio_to_floor", {})
        rows.append(
            [
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
        )
    f = floor["kill_ack_raw_ms"]
    print_table(
        f"kill latency, ms from the kill call (floor: raw kill round trip p50 {fmt_ms(f['p50'])} / p99 "
        f"{fmt_ms(f['p99'])}; request/reply p50 {fmt_ms(floor['request_reply_ms']['p50'])})",
        [
            "N",
            "procs",
            "agents/conn",
            "cycles",
            "record",
            "observed p50",
            "observed p99",
            "ack p50",
            "all-acked p50",
            "all-acked p99",
            "max",
            "p50/floor",
            "kill() ret p50",
            "resume-all p50",
            "resume-all p99",
            "incomplete",
        ],
        rows,
    )


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
                print(
                    f"N={n:,}, {res['agents_per_connection']} agents/connection: all-acked p50 "
                    f"{fmt_ms(res['all_acked_ms']['p50'])} ms, p99 {fmt_ms(res['all_acked_ms']['p99'])} ms "
                    f"({res['cycles']} cycles, {res['processes']} procs, startup {res['startup_s']} s); "
                    f"CPU us per instance per kill cycle {res['cpu_us_per_instance_cycle']}; "
                    f"idle CPU us per instance-second {res.get('idle_cpu_us_per_instance_s')}",
                    flush=True,
                )
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

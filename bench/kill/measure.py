"""One kill-latency run: a controller and a fleet of N instances started, the cycles run, torn down."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import bench_prefix, bench_settings
from bench.kill.cycles import Cycler, idle_cpu, run_cycles
from bench.kill.fleet import default_processes, spawn_fleet, wait_active, wait_ready
from bench.kill.observer import Observer
from bench.kill.summary import summarise
from bench.support.procs import Children, shares, spawn_controller
from bench.support.profiling import nats_server_pids
from bench.support.stats import percentiles

__all__ = ["measure", "measure_floor_for_kill"]


async def measure_floor_for_kill(url: str, n: int) -> dict[str, Any]:
    from bench.floor import kill_ack_raw, kv_put, request_reply

    acks, repubs = await kv_put(url, n)
    return {
        "kill_ack_raw_ms": percentiles(await kill_ack_raw(url, n)),
        "request_reply_ms": percentiles(await request_reply(url, n)),
        "kv_put_republish_ms": percentiles(repubs),
        "kv_put_ack_ms": percentiles(acks),
    }


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
    counts = shares(instances, procs_n)
    per_proc = math.ceil(instances / procs_n)
    apc = min(agents_per_connection or per_proc, per_proc)
    out: dict[str, Any] = {
        "instances": instances,
        "processes": procs_n,
        "mode": mode,
        "guarded": guarded,
        "agents_per_connection": apc,
        "agent_connections": sum(math.ceil(c / apc) for c in counts if c),
    }
    with tempfile.TemporaryDirectory(prefix="mesh-bench-kill-") as tmpdir, Children() as kids:
        tmp = Path(tmpdir)
        ctl = await asyncio.to_thread(spawn_controller, kids, url, prefix, log=tmp / "controller.log")
        t_start = time.perf_counter()
        fleet_pids = spawn_fleet(
            kids, url, prefix, run_id, uri, counts, mode=mode, guarded=guarded,
            heartbeat_interval=heartbeat_interval, agents_per_connection=agents_per_connection, log_dir=tmp,
        )  # fmt: skip
        ready = await wait_ready(obs.nc, run_id, procs_n, instances, tmp)
        out["startup_s"] = round(time.perf_counter() - t_start, 2)
        out["ready"] = ready
        active, waited = await wait_active(conn, uri, instances, 30 + instances * 0.01)
        out["controller_saw_active"] = active
        out["controller_active_wait_s"] = round(waited, 2)
        mesh = AsyncMesh(settings, connection=conn)
        await mesh.connect()
        cpu_pids = {
            "operator": [os.getpid()],
            "controller": [ctl.pid],
            "fleet": fleet_pids,
            "nats_server": nats_server_pids(),
        }
        if idle_s > 0:
            out.update(await idle_cpu(cpu_pids, instances, idle_s))
        cycler = Cycler(mesh, conn, obs, uri, instances, procs_n, run_id, wait)
        rows, cpu = await run_cycles(
            cycler, warmup=warmup, cycles=cycles, cpu_pids=cpu_pids, profile=profile, py_spy=py_spy,
            spy_targets={"operator": os.getpid(), "fleet0": fleet_pids[0], "controller": ctl.pid},
        )  # fmt: skip
        out.update(cpu)
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
    out.update(summarise(rows))
    if floor_n:
        out["floor"] = await measure_floor_for_kill(url, floor_n)
    return out

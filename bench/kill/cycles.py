"""The measured kill/resume cycles through the operator API, with CPU and optional profiles over them."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import request_json
from bench.kill.fleet import wait_active
from bench.kill.observer import Observer
from bench.support.profiling import PySpy, cpu_seconds

__all__ = ["GRACE", "Cycler", "idle_cpu", "run_cycles"]

GRACE = 600.0  # no escalation during a bench: every instance is parked at a safe point anyway


def _ms(ts: list[float], t0: float) -> list[float]:
    return [(t - t0) * 1000 for t in ts]


@dataclass
class Cycler:
    """What one kill/resume cycle needs: the operator's mesh, the observer and the fleet's shape."""

    mesh: Any
    conn: Any
    obs: Observer
    uri: str
    instances: int
    procs_n: int
    run_id: str
    wait: float

    async def kill_resume(self) -> dict[str, Any]:
        """Kill, wait for every ack, resume, wait for every resumed event: the raw timestamps."""
        obs = self.obs
        obs.reset(self.instances)
        await obs.nc.flush()
        t0 = time.time()
        report = await self.mesh.kill(self.uri, reason="bench", grace=GRACE, wait=self.wait)
        t_ret = time.time()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(obs.halted_evt.wait(), self.wait)
        halted = list(obs.halted)
        record = list(obs.record)
        t_r0 = time.time()
        rreport = await self.mesh.resume(self.uri, reason="bench", wait=self.wait)
        t_rret = time.time()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(obs.resumed_evt.wait(), self.wait)
        resumed = list(obs.resumed)
        return {"t0": t0, "t_ret": t_ret, "t_r0": t_r0, "t_rret": t_rret, "report": report,
                "rreport": rreport, "halted": halted, "record": record, "resumed": resumed}  # fmt: skip

    async def settle(self) -> dict[str, Any]:
        """What the fleet noted (observed, resumed), then every instance active again."""
        seen: list[float] = []
        cleared: list[float] = []
        for p in range(self.procs_n):
            with contextlib.suppress(Exception):
                got = await request_json(self.obs.nc, f"bench.fleet.{self.run_id}.{p}.collect", 10.0)
                seen += got["observed"]
                cleared += got["resumed"]
        active, waited = await wait_active(self.conn, self.uri, self.instances, 10 + self.instances * 0.002)
        return {"seen": seen, "cleared": cleared, "active": active, "waited": waited}

    def row(self, k: dict[str, Any], s: dict[str, Any]) -> dict[str, Any]:
        """One cycle's figures, in ms from the kill call (resume figures from the resume call)."""
        n, t0, t_r0 = self.instances, k["t0"], k["t_r0"]
        halted, resumed, record, report = k["halted"], k["resumed"], k["record"], k["report"]
        acked_ms = _ms(halted, t0)
        return {
            "record_ms": _ms(record[:1], t0)[0] if record else None,
            "observed_ms": _ms(s["seen"], t0),
            "acked_ms": acked_ms,
            "all_acked_ms": max(acked_ms) if len(halted) >= n else None,
            "acks": len(halted),
            "kill_call_ms": (k["t_ret"] - t0) * 1000,
            "report_acked": report.acked,
            "report_expected": report.expected,
            "report_missing": len(report.missing),
            "resume_call_ms": (k["t_rret"] - t_r0) * 1000,
            "resume_all_ms": max(_ms(resumed, t_r0)) if len(resumed) >= n else None,
            "resume_observed_ms": _ms(s["cleared"], t_r0),
            "resumes": len(resumed),
            "resume_report_acked": k["rreport"].acked,
            "active_before_next": s["active"],
            "settle_s": round(s["waited"], 3),
        }


async def idle_cpu(cpu_pids: dict[str, list[int]], instances: int, idle_s: float) -> dict[str, Any]:
    """What an idle instance costs (heartbeats, re-reads, timers): no kill in flight."""
    idle0 = cpu_seconds(cpu_pids)
    await asyncio.sleep(idle_s)
    idle1 = cpu_seconds(cpu_pids)
    return {
        "idle_s": idle_s,
        "idle_cpu_us_per_instance_s": {
            k: round((idle1[k] - idle0.get(k, 0.0)) * 1e6 / (instances * idle_s), 1) for k in idle1
        },
    }


async def run_cycles(
    cycler: Cycler,
    *,
    warmup: int,
    cycles: int,
    cpu_pids: dict[str, list[int]],
    spy_targets: dict[str, int],
    profile: Path | None = None,
    py_spy: Path | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``warmup`` cycles, then ``cycles`` measured ones: their rows, and CPU (and profiles) over them."""
    profiler: Any = None
    spy: PySpy | None = None
    rows: list[dict[str, Any]] = []
    cpu0: dict[str, float] = {}
    for c in range(warmup + cycles):
        if c == warmup:
            cpu0 = cpu_seconds(cpu_pids)
        if py_spy is not None and c == warmup:
            spy = PySpy(py_spy, spy_targets)
            spy.start()
            await asyncio.sleep(1.0)  # let py-spy attach
        if profile is not None and c == warmup:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0005, async_mode="enabled")
            profiler.start()
        k = await cycler.kill_resume()
        if profiler is not None and c == warmup:
            profiler.stop()
        s = await cycler.settle()
        if c >= warmup:
            rows.append(cycler.row(k, s))
    cpu1 = cpu_seconds(cpu_pids)
    measured = max(1, cycles)
    out: dict[str, Any] = {
        "cpu_ms_per_cycle": {k: round((cpu1[k] - cpu0.get(k, 0.0)) * 1000 / measured, 1) for k in cpu1}
    }
    out["cpu_us_per_instance_cycle"] = {
        k: round(v * 1000 / cycler.instances, 1) for k, v in out["cpu_ms_per_cycle"].items()
    }
    if spy is not None:
        out["py_spy"] = spy.stop()
    if profiler is not None and profile is not None:
        profile.parent.mkdir(parents=True, exist_ok=True)
        profile.write_text(profiler.output_text(unicode=False, color=False, show_all=False))
        out["profile"] = str(profile)
    return rows, out

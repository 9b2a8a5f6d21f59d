"""Run the campaign: ``python -m tests.campaign.run --seconds 600 --seed 1 [--topology cluster]``.

Starts the system, lets the operator and the nemesis loose for ``--seconds``, heals every fault,
lets the mesh settle, reads the final state, runs the checker, prints a summary table and writes
the history with the anomalies as JSON. Exit code 1 when there is an anomaly.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import checker, collect
from .history import History
from .nemesis import Nemesis
from .topology import FLEET, System
from .workload import Operator

#: Quiet time after the last heal, so that every instance can converge before the final read.
SETTLE = 6.0


@dataclass
class Result:
    seed: int
    topology: str
    seconds: float
    summary: dict[str, Any]
    anomalies: list[checker.Anomaly]
    path: Path


async def supervise(system: System, history: History, stop: asyncio.Event) -> None:
    """An exit the campaign did not cause is recorded (an anomaly), and the process restarted."""
    while not stop.is_set():
        procs = [*system.agents.values(), *([system.controller] if system.controller else [])]
        for proc in procs:
            rc = proc.died()
            if rc is not None:
                history.add("proc_died", name=proc.name, rc=rc, tail=proc.tail())
                proc.start()
                history.add("proc_start", name=proc.name, pid=proc.pid, why="after dying")
        await asyncio.sleep(0.2)


async def wait_working(system: System, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    want = {m.split("#")[1] for ms in FLEET.values() for m in ms}
    while time.monotonic() < deadline:
        acting = {a["inst"] for a in collect.read_actions(system) if a["ev"] == "act"}
        if want <= acting:
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"the fleet did not start working within {timeout:g}s (see {system.workdir})")


async def campaign(seconds: float, seed: int, topology: str, workdir: Path, out: Path) -> Result:
    rng = random.Random(seed)
    history = History()
    system = System(topology, workdir)
    started = time.time()
    phases: dict[str, float] = {}
    await asyncio.to_thread(system.start_servers)
    await asyncio.to_thread(system.init_mesh)
    system.start_controller()
    system.start_agents()
    operator: Operator | None = None
    try:
        await wait_working(system)
        phases["setup"] = time.time() - started
        history.add("begin", seed=seed, topology=topology, seconds=seconds)
        operator = Operator(system.settings("operator"), history, random.Random(rng.random()))
        nemesis = Nemesis(system, history, random.Random(rng.random()))
        stop, stop_supervisor = asyncio.Event(), asyncio.Event()
        watch = asyncio.create_task(supervise(system, history, stop_supervisor))
        tasks = [asyncio.create_task(operator.run(stop)), asyncio.create_task(nemesis.run(stop))]
        # sleep-ok: the campaign's length: the operator and the nemesis act for this long
        await asyncio.sleep(seconds)
        stop.set()
        await asyncio.gather(*tasks)
        await nemesis.heal_all()
        await operator.remove_policies()
        await operator.clear_all()
        history.add("quiesce")
        last_heal = max((e["t"] for e in history.of("heal")), default=time.time())
        recover = max((checker.RECOVER.get(f["name"], 5.0) for f in history.of("fault")[-1:]), default=0.0)
        # sleep-ok: the quiet window after the last heal that the checker's convergence rules are stated over
        await asyncio.sleep(max(SETTLE, last_heal + recover + 3.0 - time.time()))
        end = time.time()
        history.add("end")
        keys = await collect.final_keys(system.settings("operator"))
        audit = await collect.read_audit(system.settings("operator"))
        control = await collect.read_control(system.settings("admin"))
        verify = await asyncio.to_thread(collect.audit_verify, system, workdir)
        phases["collect"] = time.time() - end
        stop_supervisor.set()
        await watch
    finally:
        if operator is not None:
            await operator.close()
        down = time.time()
        await asyncio.to_thread(system.shutdown)
        phases["shutdown"] = time.time() - down
    actions = collect.read_actions(system)
    members = [m for ms in FLEET.values() for m in ms]
    inp = checker.Input(
        history=history.entries,
        actions=actions,
        audit=audit,
        control=control,
        final_keys=keys,
        instances=members,
        process_of={m: p for p, ms in FLEET.items() for m in ms},
        end=end,
        verify=verify,
    )
    tally: Counter[str] = Counter()
    anomalies = checker.check(inp, tally)
    summary = summarize(history, actions, audit, anomalies, verify, time.time() - started)
    summary["kill_obligations"] = dict(tally)
    summary["phases"] = {k: round(v, 1) for k, v in phases.items()}
    doc = {
        "seed": seed,
        "topology": topology,
        "seconds": seconds,
        "summary": summary,
        "anomalies": [a.as_dict() for a in anomalies],
        "final_keys": keys,
        "verify": verify,
        "history": history.entries,
        "control": control,
        "audit": audit,
        "actions": actions,
        "workdir": str(workdir),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, default=str))
    return Result(seed, topology, seconds, summary, anomalies, out)


def summarize(
    history: History,
    actions: list[dict[str, Any]],
    audit: list[dict[str, Any]],
    anomalies: list[checker.Anomaly],
    verify: dict[str, Any],
    wall: float,
) -> dict[str, Any]:
    ops = history.of("op")
    return {
        "wall_seconds": round(wall, 1),
        "operations": len(ops),
        "operations_ok": sum(1 for o in ops if o.get("ok")),
        "operations_by_kind": dict(Counter(f"{o['op']}:{'ok' if o.get('ok') else 'failed'}" for o in ops)),
        "kills_by_scope": dict(Counter(o["scope"] for o in ops if o["op"] == "kill" and o.get("ok"))),
        "faults": len(history.of("fault")),
        "faults_by_kind": dict(Counter(f["name"] for f in history.of("fault"))),
        "guarded_actions": sum(1 for a in actions if a["ev"] == "act"),
        "instance_starts": sum(1 for a in actions if a["ev"] == "start"),
        "start_retries": sum(1 for a in actions if a["ev"] == "start_failed"),
        "halt_acks": sum(1 for e in audit if e["type"] == "halted"),
        "audit_events": len(audit),
        "audit_verify": "intact" if verify.get("rc") == 0 and not verify.get("broken") else "BROKEN",
        "anomalies": len(anomalies),
        "anomalies_by_rule": dict(Counter(a.rule for a in anomalies)),
    }


def table(result: Result) -> str:
    s = result.summary
    rows: list[tuple[str, Any]] = [
        ("topology / seed / seconds", f"{result.topology} / {result.seed} / {result.seconds:g}"),
        ("operations (ok)", f"{s['operations']} ({s['operations_ok']})"),
        *((f"  {k}", v) for k, v in sorted(s["operations_by_kind"].items())),
        ("kills by scope", ", ".join(f"{k} {v}" for k, v in sorted(s["kills_by_scope"].items()))),
        ("faults", s["faults"]),
        *((f"  {k}", v) for k, v in sorted(s["faults_by_kind"].items())),
        ("guarded actions", s["guarded_actions"]),
        ("instance starts (start retries)", f"{s['instance_starts']} ({s['start_retries']})"),
        ("halt acknowledgements", s["halt_acks"]),
        ("(record, instance) pairs", sum(s.get("kill_obligations", {}).values())),
        *((f"  {k}", v) for k, v in sorted(s.get("kill_obligations", {}).items())),
        ("audit events / verify", f"{s['audit_events']} / {s['audit_verify']}"),
        ("anomalies", s["anomalies"]),
        *((f"  {k}", v) for k, v in sorted(s["anomalies_by_rule"].items())),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
    for a in result.anomalies:
        lines.append(f"ANOMALY seed={result.seed} [{a.rule}] {a.instance or '-'}: {a.what}")
    lines.append(f"history and anomalies: {result.path}")
    return "\n".join(lines)


def recheck(path: Path) -> Result:
    """The checker again over a saved run (after a change to the checker, or to read it closer)."""
    doc = json.loads(path.read_text())
    history = History(doc["history"])
    end = next(e["t"] for e in doc["history"] if e["kind"] == "end")
    inp = checker.Input(
        history=doc["history"],
        actions=doc["actions"],
        audit=doc["audit"],
        control=doc["control"],
        final_keys=doc["final_keys"],
        instances=[m for ms in FLEET.values() for m in ms],
        process_of={m: p for p, ms in FLEET.items() for m in ms},
        end=end,
        verify=doc["verify"],
    )
    tally: Counter[str] = Counter()
    anomalies = checker.check(inp, tally)
    summary = summarize(history, doc["actions"], doc["audit"], anomalies, doc["verify"], 0.0)
    summary["kill_obligations"] = dict(tally)
    return Result(doc["seed"], doc["topology"], doc["seconds"], summary, anomalies, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.campaign.run", description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--topology", choices=("single", "cluster"), default="single")
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default .mesh/campaign/...)")
    parser.add_argument("--workdir", type=Path, default=None, help="servers' stores and process logs")
    parser.add_argument("--recheck", type=Path, default=None, help="only run the checker over this JSON")
    args = parser.parse_args(argv)
    if args.recheck is not None:
        result = recheck(args.recheck)
        print(table(result))
        return 1 if result.anomalies else 0
    if args.seconds <= 0 or args.seconds > 3600:
        parser.error(f"--seconds {args.seconds:g}: give 1 to 3600 (a bounded campaign)")
    out = args.out or Path(".mesh/campaign") / f"campaign-{args.topology}-seed{args.seed}.json"
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix=f"campaign-{args.topology}-"))
    workdir.mkdir(parents=True, exist_ok=True)
    result = asyncio.run(campaign(args.seconds, args.seed, args.topology, workdir, out))
    print(table(result))
    return 1 if result.anomalies else 0


if __name__ == "__main__":
    sys.exit(main())

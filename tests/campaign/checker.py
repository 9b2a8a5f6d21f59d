"""The checker: pure functions over the recorded history that name every anomaly.

Inputs, all plain JSON-able data: the campaign's own ``history`` (operations, faults, heals, process
events), the agents' action logs, the audit events, the control bucket's stored writes, the kill
records in force at the end and the result of ``mesh audit verify``. Times are seconds since the
epoch on the one clock of this machine (agents, servers and campaign share it).
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mesh.subjects import key_to_target, target_to_key
from mesh.target import parse_agent_uri, parse_target

#: A healthy instance acknowledges a kill within this long (it is pushed; typically milliseconds).
ACK_DEADLINE = 5.0
#: After a fault heals, how long an affected instance may still be deaf (reconnect, re-read).
RECOVER = {
    "server_kill9": 10.0,
    "node_kill9": 10.0,
    "agent_freeze": 3.0,
    "agent_restart": 5.0,
    "proxy_cut": 6.0,
    "proxy_stall": 3.0,
    # A half-open link never closes: the client must find out by itself (pings) and reconnect.
    "proxy_blackhole": 12.0,
    "controller_kill9": 0.0,
}
#: At the end, an instance no record holds must have acted within this many seconds.
CONVERGE = 5.0
#: Slack between a KV write and the audit event written just after it (same clock).
SLACK = 1.0


@dataclass(frozen=True)
class Anomaly:
    rule: str
    what: str
    t: float | None = None
    instance: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "what": self.what, "t": self.t, "instance": self.instance}


@dataclass
class Input:
    history: list[dict[str, Any]]
    actions: list[dict[str, Any]]  # the agents' log lines: ev = process | start | start_failed | act
    audit: list[dict[str, Any]]  # AuditEvent.model_dump(mode="json")
    control: list[dict[str, Any]]  # {"seq", "key", "op": PUT|DEL|PURGE, "t"}
    final_keys: list[str]  # kill records in force at the end
    instances: list[str]  # uri#instance of the whole fleet
    process_of: dict[str, str]  # uri#instance -> agent process name
    end: float  # when the final state was read
    verify: dict[str, Any] = field(default_factory=dict)  # {"rc": int, "broken": ..., "events": n}


def ts(value: Any) -> float:
    if isinstance(value, int | float):
        return float(value)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def _member(event: dict[str, Any]) -> str | None:
    if event.get("agent_uri") and event.get("instance"):
        return f"{event['agent_uri']}#{event['instance']}"
    return None


def _key_matches(key: str, member: str) -> bool:
    uri, inst = member.split("#", 1)
    return key_to_target(key).matches(parse_agent_uri(uri), inst)


# -- timelines ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Write:
    revision: int
    key: str
    op: str  # "kill" or "clear"
    t: float
    target: str | None = None


def control_writes(inp: Input) -> list[Write]:
    """Every write to the control bucket, by revision: the stored ones, and those only audited."""
    by_rev: dict[int, Write] = {}
    for e in inp.audit:
        if e["type"] in ("kill", "resume") and e.get("revision"):
            key = (e.get("data") or {}).get("key") or ""
            op = "kill" if e["type"] == "kill" else "clear"
            # the audit event is written just after the KV write: a little earlier is the write
            by_rev[e["revision"]] = Write(e["revision"], key, op, ts(e["time"]) - SLACK, e.get("target"))
    for m in inp.control:
        old = by_rev.get(m["seq"])
        op = "kill" if m["op"] == "PUT" else "clear"
        by_rev[m["seq"]] = Write(m["seq"], m["key"], op, float(m["t"]), old.target if old else None)
    return [by_rev[r] for r in sorted(by_rev)]


def in_force(writes: list[Write], end: float) -> list[tuple[Write, float]]:
    """Each kill write with the time its record stopped being in force (the next write on its key)."""
    out = []
    for i, w in enumerate(writes):
        if w.op != "kill":
            continue
        later = [x.t for x in writes[i + 1 :] if x.key == w.key]
        out.append((w, later[0] if later else end))
    return out


def impaired(inp: Input, member: str) -> list[tuple[float, float]]:
    """Intervals in which ``member`` may be deaf: faults on its process (or on every process)."""
    proc = inp.process_of[member]
    out = []
    for f in inp.history:
        if f["kind"] != "fault" or proc not in f.get("affects", []):
            continue
        healed = float(f.get("healed", inp.end))
        out.append((float(f["t"]) - 0.5, healed + RECOVER.get(f["name"], 5.0)))
    return out


def alive(inp: Input, member: str) -> list[tuple[float, float]]:
    """From each start of the instance (its log) until its process is killed or the run ends."""
    uri, inst = member.split("#", 1)
    starts = sorted(
        a["t"] for a in inp.actions if a["ev"] == "start" and a["inst"] == inst and a["uri"] == uri
    )
    proc = inp.process_of[member]
    deaths = sorted(
        float(f["t"])
        for f in inp.history
        if (f["kind"] == "fault" and f["name"] == "agent_restart" and proc in f["affects"])
        or (f["kind"] == "proc_died" and f["name"] == proc)
    )
    out = []
    for s in starts:
        after = [d for d in deaths if d > s]
        out.append((s, after[0] if after else inp.end))
    return out


def healthy_stretches(inp: Input, member: str, lo: float, hi: float) -> list[tuple[float, float]]:
    bad = sorted(impaired(inp, member))
    out = []
    for a, b in alive(inp, member):
        a, b = max(a, lo), min(b, hi)
        cur = a
        for x, y in bad:
            if y <= cur or x >= b:
                continue
            if x > cur:
                out.append((cur, x))
            cur = max(cur, y)
        if cur < b:
            out.append((cur, b))
    return out


# -- the rules -----------------------------------------------------------------------------------------


def no_action_after_halt(inp: Input, writes: list[Write]) -> list[Anomaly]:
    """Rules 1 and 4 of the kill contract: nothing acts after its halt acknowledgement until it
    publishes ``resumed`` (or a new process of it starts with no record in force); and rule 3: a new
    process that starts under a record acts only once the record is cleared."""
    out: list[Anomaly] = []
    clears: dict[str, list[float]] = {}
    for w in writes:
        if w.op == "clear":
            clears.setdefault(w.key, []).append(w.t)
    for member in inp.instances:
        uri, inst = member.split("#", 1)
        marks = sorted(
            (ts(e["time"]), e["type"], e)
            for e in inp.audit
            if _member(e) == member and e["type"] in ("halted", "resumed", "started")
        )
        acts = sorted(
            a["t"] for a in inp.actions if a["ev"] == "act" and a["uri"] == uri and a["inst"] == inst
        )
        acts_n = {
            a["t"]: a["n"] for a in inp.actions if a["ev"] == "act" and a["uri"] == uri and a["inst"] == inst
        }
        windows: list[tuple[float, float, str]] = []
        opened: float | None = None
        for t, etype, e in marks:
            if etype == "halted" and opened is None:
                opened = t
            elif etype == "resumed" and opened is not None:
                windows.append((opened, t, "halted"))
                opened = None
            elif etype == "started":
                if opened is not None:
                    windows.append((opened, t, "halted"))
                    opened = None
                keys = (e.get("data") or {}).get("kill_keys") or []
                if keys:  # started under records: no action until each is cleared (or a halt)
                    until = max(_first_after(clears.get(k, []), t) for k in keys)
                    nxt = [x for x, ty, _ in marks if x > t and ty in ("halted", "started")]
                    windows.append((t, min([until, *nxt]), "started under " + ",".join(keys)))
        if opened is not None:
            windows.append((opened, inp.end + 1, "halted"))
        for lo, hi, why in windows:
            i = bisect.bisect_right(acts, lo)
            bad = [a for a in acts[i:] if a < hi]
            if bad:
                out.append(
                    Anomaly(
                        "no-action-after-halt",
                        f"{len(bad)} action(s) (first n={acts_n[bad[0]]}) {bad[0] - lo:.3f}s after "
                        f"{why} at {lo:.3f}, before it resumed",
                        bad[0],
                        member,
                    )
                )
    return out


def _first_after(times: list[float], t: float) -> float:
    later = [x for x in times if x > t - SLACK]
    return min(later) if later else float("inf")


def started_under_kill(inp: Input, writes: list[Write]) -> list[Anomaly]:
    """Rule 3: a process that starts while a matching record is in force reads it before acting."""
    out = []
    spans = in_force(writes, inp.end + 1)
    for e in inp.audit:
        member = _member(e)
        if e["type"] != "started" or member is None or member not in inp.process_of:
            continue
        t = ts(e["time"])
        keys = set((e.get("data") or {}).get("kill_keys") or [])
        for w, until in spans:
            if w.t + SLACK < t < until - SLACK and w.key not in keys and _key_matches(w.key, member):
                out.append(
                    Anomaly(
                        "started-under-kill",
                        f"started at {t:.3f} not seeing record {w.key} (rev {w.revision})",
                        t,
                        member,
                    )
                )
    return out


def every_kill_acked(inp: Input, writes: list[Write], tally: Counter[str] | None = None) -> list[Anomaly]:
    """A record in force is acknowledged by each matching instance that was healthy for a while.

    ``tally`` counts each (record, matching instance) pair: acknowledged; not, but cleared or
    replaced before it could be (in force under ACK_DEADLINE); not, but impaired by a fault the
    whole time; or not acknowledged (the anomaly).
    """
    acked = {(_member(e), e.get("revision")) for e in inp.audit if e["type"] == "halted"}
    tally = Counter() if tally is None else tally
    silent: dict[str, list[tuple[float, float]]] = {}  # stale/lost until the next sign of life
    for member in inp.instances:
        marks = sorted((ts(e["time"]), e["type"]) for e in inp.audit if _member(e) == member)
        for k, (t, etype) in enumerate(marks):
            if etype in ("stale", "lost"):
                back = next((x for x, ty in marks[k + 1 :] if ty not in ("stale", "lost")), inp.end)
                silent.setdefault(member, []).append((t, back))
    out = []
    for w, until in in_force(writes, inp.end):
        for member in inp.instances:
            if not _key_matches(w.key, member):
                continue
            if (member, w.revision) in acked:
                tally["acked"] += 1
                continue
            stretches = healthy_stretches(inp, member, w.t, until)
            stretch = [(a, b) for a, b in stretches if b - a >= ACK_DEADLINE]
            if not stretch:
                if until - w.t < ACK_DEADLINE:
                    tally["cleared before it could ack"] += 1
                elif any(a <= until and b >= w.t for a, b in silent.get(member, [])):
                    tally["impaired by a fault, marked stale/lost"] += 1
                else:
                    tally["impaired by a fault, back before stale"] += 1
                continue
            tally["not acked"] += 1
            a, b = stretch[0]
            out.append(
                Anomaly(
                    "kill-acked",
                    f"record {w.key} (rev {w.revision}) never acknowledged, though healthy "
                    f"{a:.3f}-{b:.3f} ({b - a:.1f}s) while it was in force",
                    w.t,
                    member,
                )
            )
    return out


def converged(inp: Input) -> list[Anomaly]:
    """At the end every instance no record holds is acting again (nothing hung, nothing stuck paused)."""
    out = []
    for member in inp.instances:
        if any(_key_matches(k, member) for k in inp.final_keys):
            continue
        uri, inst = member.split("#", 1)
        last = max(
            (a["t"] for a in inp.actions if a["ev"] == "act" and a["uri"] == uri and a["inst"] == inst),
            default=0.0,
        )
        if last < inp.end - CONVERGE:
            out.append(
                Anomaly(
                    "converged",
                    f"no record holds it, but its last action was {inp.end - last:.1f}s before the end",
                    inp.end,
                    member,
                )
            )
    return out


def checkpoints_forward(inp: Input) -> list[Anomaly]:
    """The checkpoint in a halt acknowledgement is durable: no later start restores less, and no
    action after it (a resume, or a new process) goes below it."""
    out = []
    for member in inp.instances:
        uri, inst = member.split("#", 1)
        acks = sorted(
            (ts(e["time"]), ((e.get("data") or {}).get("checkpoint") or {}).get("n"))
            for e in inp.audit
            if e["type"] == "halted" and _member(e) == member
        )
        mine = [a for a in inp.actions if a.get("uri") == uri and a.get("inst") == inst]
        for t, n in acks:
            if n is None:
                continue
            start = next(
                (a for a in sorted(mine, key=lambda a: a["t"]) if a["ev"] == "start" and a["t"] > t), None
            )
            if start is not None and start["restored"] < n:
                out.append(
                    Anomaly(
                        "checkpoint-forward",
                        f"restart restored n={start['restored']} after an ack at n={n}",
                        start["t"],
                        member,
                    )
                )
            act = next(
                (a for a in sorted(mine, key=lambda a: a["t"]) if a["ev"] == "act" and a["t"] > t), None
            )
            if act is not None and act["n"] < n:
                out.append(
                    Anomaly(
                        "checkpoint-forward", f"acted at n={act['n']} after an ack at n={n}", act["t"], member
                    )
                )
    return out


def audit_complete(inp: Input) -> list[Anomaly]:
    """The chain verifies; no event is doubled; every command and every control write is audited."""
    out = []
    if inp.verify.get("rc") != 0 or inp.verify.get("broken"):
        out.append(
            Anomaly(
                "audit-verify", f"mesh audit verify: rc={inp.verify.get('rc')} {inp.verify.get('broken')}"
            )
        )
    ids = Counter(e["id"] for e in inp.audit)
    for eid, n in ids.items():
        if n > 1:
            out.append(Anomaly("audit-doubled", f"event {eid} stored {n} times"))
    by_command = {(e["type"], e.get("command_id")) for e in inp.audit}
    for op in inp.history:
        done = op["kind"] == "op" and op.get("ok") and op["op"] in ("kill", "resume")
        if done and (op["op"], op.get("command_id")) not in by_command:
            out.append(
                Anomaly(
                    "audit-command",
                    f"{op['op']} {op['target']} (rev {op.get('revision')}) not in the audit log",
                    op["t"],
                )
            )
    audited = {e.get("revision") for e in inp.audit if e["type"] in ("kill", "resume")}
    for m in inp.control:
        if m["seq"] not in audited:
            out.append(
                Anomaly(
                    "audit-command",
                    f"control write {m['op']} {m['key']} (rev {m['seq']}) has no audit event",
                    m["t"],
                )
            )
    return out


def no_record_lost(inp: Input) -> list[Anomaly]:
    """A kill the server acknowledged (a revision) stays stored, across restarts and leader changes,
    for as long as the bucket keeps its key's history: none is missing between stored neighbours."""
    stored: dict[str, set[int]] = {}
    for m in inp.control:
        stored.setdefault(m["key"], set()).add(m["seq"])
    out = []
    for op in inp.history:
        if op["kind"] != "op" or not op.get("ok") or op["op"] not in ("kill", "resume"):
            continue
        key, rev = target_to_key(parse_target(op["target"])), op.get("revision")
        revs = stored.get(key, set())
        if rev and revs and min(revs) < rev and rev not in revs:
            out.append(
                Anomaly(
                    "record-lost", f"{op['op']} {op['target']} rev {rev} acknowledged, not stored", op["t"]
                )
            )
    return out


def bounded(inp: Input) -> list[Anomaly]:
    out = []
    for e in inp.history:
        if e["kind"] == "op" and e.get("error") == "hung":
            out.append(Anomaly("bounded", f"operator {e['op']} {e.get('target')} did not return", e["t"]))
        if e["kind"] == "proc_died":
            out.append(
                Anomaly(
                    "process-died", f"{e['name']} exited by itself (rc {e['rc']}): {e.get('tail')}", e["t"]
                )
            )
    return out


def check(inp: Input, tally: Counter[str] | None = None) -> list[Anomaly]:
    """Every anomaly; ``tally`` (if given) counts what the kill-acked rule saw."""
    writes = control_writes(inp)
    return [
        *no_action_after_halt(inp, writes),
        *started_under_kill(inp, writes),
        *every_kill_acked(inp, writes, tally),
        *converged(inp),
        *checkpoints_forward(inp),
        *audit_complete(inp),
        *no_record_lost(inp),
        *bounded(inp),
    ]

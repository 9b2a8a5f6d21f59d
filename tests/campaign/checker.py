"""The checker: pure functions over the recorded history that name every anomaly.

Inputs, all plain JSON-able data (``timeline.Input``): the campaign's own ``history`` (operations,
faults, heals, process events), the agents' action logs, the audit events, the control bucket's
stored writes, the kill records in force at the end and the result of ``mesh audit verify``.
"""

from __future__ import annotations

import bisect
from collections import Counter

from mesh.protocol.subjects import target_to_key
from mesh.protocol.target import parse_target

from .timeline import (
    ACK_DEADLINE,
    CONVERGE,
    RECOVER,
    SLACK,
    Anomaly,
    Input,
    Write,
    control_writes,
    healthy_stretches,
    in_force,
    key_matches,
    member_of,
    ts,
)

__all__ = ["ACK_DEADLINE", "RECOVER", "Anomaly", "Input", "check"]

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
            if member_of(e) == member and e["type"] in ("halted", "resumed", "started")
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
        member = member_of(e)
        if e["type"] != "started" or member is None or member not in inp.process_of:
            continue
        t = ts(e["time"])
        keys = set((e.get("data") or {}).get("kill_keys") or [])
        for w, until in spans:
            if w.t + SLACK < t < until - SLACK and w.key not in keys and key_matches(w.key, member):
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
    acked = {(member_of(e), e.get("revision")) for e in inp.audit if e["type"] == "halted"}
    tally = Counter() if tally is None else tally
    silent: dict[str, list[tuple[float, float]]] = {}  # stale/lost until the next sign of life
    for member in inp.instances:
        marks = sorted((ts(e["time"]), e["type"]) for e in inp.audit if member_of(e) == member)
        for k, (t, etype) in enumerate(marks):
            if etype in ("stale", "lost"):
                back = next((x for x, ty in marks[k + 1 :] if ty not in ("stale", "lost")), inp.end)
                silent.setdefault(member, []).append((t, back))
    out = []
    for w, until in in_force(writes, inp.end):
        for member in inp.instances:
            if not key_matches(w.key, member):
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
        if any(key_matches(k, member) for k in inp.final_keys):
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
            if e["type"] == "halted" and member_of(e) == member
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

"""The checker's data and timelines: its input, anomalies, control writes, and when an instance was
alive and healthy (running, with no fault on it) to be held to the kill contract.

Times are seconds since the epoch on the one clock of this machine (agents, servers and campaign
share it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mesh.protocol.subjects import key_to_target
from mesh.protocol.target import parse_agent_uri

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


def member_of(event: dict[str, Any]) -> str | None:
    if event.get("agent_uri") and event.get("instance"):
        return f"{event['agent_uri']}#{event['instance']}"
    return None


def key_matches(key: str, member: str) -> bool:
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

"""AXME-compatible routes (``/v1/mesh/...``) for the published ``axme`` client: change only base_url and key.

Address ids map to agent URIs by their segments: ``acme.prod.mailer`` is ``agent://acme/prod/mailer``
and ``acme.prod.mailer.w1`` its instance ``w1``. Health follows AXME's names: ``healthy``,
``degraded`` (stale), ``unreachable`` (lost, stopped, crashed) and ``killed`` (a kill record in force).
"""

from __future__ import annotations

from collections import deque
from typing import Any

from mesh.errors import InvalidTarget
from mesh.protocol.models import InstanceStatus, Status
from mesh.protocol.reports import HeldBy
from mesh.protocol.target import Target, parse_agent_uri, parse_target

__all__ = ["HEALTH", "address_of", "agent_rows", "health_of", "metrics_to_usage", "parse_address"]

HEALTH = ("healthy", "degraded", "unreachable", "killed")
#: AXME counters arrive as increments since the last heartbeat; the mesh keeps monotonic totals.
COUNTERS = frozenset({"intents_total", "intents_succeeded", "intents_failed", "cost_usd"})

_BY_STATUS = {
    Status.ACTIVE: "healthy",
    Status.PAUSED: "killed",
    Status.KILLED: "killed",
    Status.TERMINATED: "killed",
    Status.STALE: "degraded",
    Status.LOST: "unreachable",
    Status.CRASHED: "unreachable",
    Status.STOPPED: "unreachable",
}


def parse_address(address_id: str) -> Target:
    """``org.env.name`` or ``org.env.name.instance`` -> a target; :class:`InvalidTarget` naming the part."""
    parts = address_id.split(".")
    if len(parts) not in (3, 4) or any(p == "*" for p in parts):
        raise InvalidTarget(
            address_id,
            "address_id",
            "use ORG.ENV.NAME or ORG.ENV.NAME.INSTANCE (agent://ORG/ENV/NAME#INSTANCE)",
        )
    return parse_target(f"agent://{parts[0]}/{parts[1]}/{parts[2]}", parts[3] if len(parts) == 4 else None)


def address_of(agent_uri: str, instance: str | None = None) -> str:
    tgt = parse_target(agent_uri, instance)
    base = ".".join(tgt.tokens)
    return f"{base}.{instance}" if instance else base


def health_of(status: Status, killed: bool) -> str:
    return "killed" if killed else _BY_STATUS.get(status, "unreachable")


def metrics_to_usage(
    metrics: dict[str, Any], totals: dict[str, float]
) -> tuple[dict[str, float], dict[str, Any]]:
    """Add the counters of one AXME heartbeat to ``totals``; the rest (averages) is metadata."""
    meta: dict[str, Any] = {}
    for name, value in metrics.items():
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if name in COUNTERS and number and value >= 0:
            totals[name] = totals.get(name, 0.0) + float(value)
        elif isinstance(value, str | int | float | bool) or value is None:
            meta[name] = value
    return dict(totals), meta


def agent_rows(instances: list[InstanceStatus], records: list[HeldBy]) -> list[dict[str, Any]]:
    """One row per agent (its instances inside), healthiest instance first, killed over all."""
    rank = {h: i for i, h in enumerate(HEALTH)}
    held = [parse_target(h.target) for h in records]
    by_agent: dict[str, list[InstanceStatus]] = {}
    for s in instances:
        by_agent.setdefault(s.agent_uri, []).append(s)
    rows = []
    for uri, group in sorted(by_agent.items()):
        agent = parse_agent_uri(uri)
        inst_rows: list[dict[str, Any]] = []
        healths: list[str] = []
        for s in group:
            killed = any(t.matches(agent, s.instance) for t in held)
            healths.append(health_of(s.status, killed))
            inst_rows.append(
                {
                    "address_id": address_of(s.agent_uri, s.instance),
                    "instance": s.instance,
                    "status": s.status.value,
                    "health_status": healths[-1],
                    "last_heartbeat_at": s.last_seen.isoformat(),
                    "metadata": s.metadata,
                    "metrics": s.usage,
                }
            )
        alive = [h for h in healths if h != "killed"]
        best = min(alive, key=lambda h: rank[h]) if alive else "killed"
        totals: dict[str, float] = {}
        for s in group:
            for name, value in s.usage.items():
                totals[name] = totals.get(name, 0.0) + value
        rows.append(
            {
                "address_id": address_of(uri),
                "agent_uri": uri,
                "health_status": best,
                "last_heartbeat_at": max(s.last_seen for s in group).isoformat(),
                "metrics": totals,
                "instances": inst_rows,
            }
        )
    return rows


def newest(events: deque[dict[str, Any]]) -> list[dict[str, Any]]:
    return list(reversed(events))

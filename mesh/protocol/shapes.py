"""JSON shapes of instances, events and policies: one serializer for ``--json`` and the HTTP API."""

from __future__ import annotations

from mesh.protocol.models import AuditEvent, InstanceStatus
from mesh.protocol.policy import Policy

__all__ = ["event_json", "instance_json", "policy_json"]


def instance_json(s: InstanceStatus) -> dict[str, object]:
    return {
        "agent_uri": s.agent_uri,
        "instance": s.instance,
        "status": s.status.value,
        "last_seen": s.last_seen.isoformat(),
        "metadata": s.metadata,
    }


def event_json(e: AuditEvent) -> dict[str, object]:
    return {
        "id": e.id,
        "time": e.time.isoformat(),
        "type": e.type.value,
        "target": e.target,
        "agent_uri": e.agent_uri,
        "instance": e.instance,
        "actor": e.actor,
        "reason": e.reason,
        "command_id": e.command_id,
        "data": e.data,
    }


def policy_json(p: Policy) -> dict[str, object]:
    return {
        "name": p.name,
        "target": p.target,
        "limits": [str(lim) for lim in p.limits],
        "action": p.action,
        "dry_run": p.dry_run,
        "on_unreachable": p.on_unreachable,
        "grace": p.grace,
        "created_by": p.created_by,
        "created_at": p.created_at.isoformat(),
    }

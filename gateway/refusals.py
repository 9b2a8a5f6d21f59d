"""Refusals grouped per agent, instance and record over a few seconds (pure), one audit event each.

A tight retry loop is thousands of refusals a second; the audit stream gets one event per group
per window, carrying the count, so it cannot be flooded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mesh.protocol.models import AuditEvent, EventType, utcnow

__all__ = ["RefusalGroup", "Refusals"]


@dataclass(slots=True)
class RefusalGroup:
    agent_uri: str
    instance: str
    reason: str
    record_key: str | None
    command_id: str | None
    first: datetime
    last: datetime
    count: int = 0
    routes: dict[str, int] = field(default_factory=dict)


class Refusals:
    def __init__(self) -> None:
        self._groups: dict[tuple[str, str, str | None, str], RefusalGroup] = {}
        self.total = 0

    def add(
        self,
        agent_uri: str,
        instance: str,
        route: str,
        reason: str,
        *,
        record_key: str | None = None,
        command_id: str | None = None,
        now: datetime | None = None,
    ) -> None:
        now = now or utcnow()
        # The record (or, failing closed, the reason) is part of the group: a new kill is news.
        gid = (agent_uri, instance, command_id, reason if command_id is None else "")
        g = self._groups.get(gid)
        if g is None:
            g = self._groups[gid] = RefusalGroup(
                agent_uri, instance, reason, record_key, command_id, now, now
            )
        g.count += 1
        g.last = now
        g.routes[route] = g.routes.get(route, 0) + 1
        self.total += 1

    def __len__(self) -> int:
        return len(self._groups)

    def drain(self, actor: str) -> list[AuditEvent]:
        """The pending groups as audit events; the aggregator starts empty again."""
        groups, self._groups = self._groups, {}
        out: list[AuditEvent] = []
        for g in groups.values():
            data: dict[str, Any] = {
                "count": g.count,
                "first": g.first.isoformat(),
                "last": g.last.isoformat(),
                "routes": g.routes,
                "key": g.record_key,
            }
            out.append(
                AuditEvent(
                    type=EventType.GATEWAY_REFUSED,
                    agent_uri=g.agent_uri,
                    instance=g.instance,
                    actor=actor,
                    reason=g.reason,
                    command_id=g.command_id,
                    data=data,
                )
            )
        return out

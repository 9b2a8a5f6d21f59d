"""Usage per agent and per instance, from the totals the controller records in the instances bucket."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mesh.protocol.budgets import BudgetRow
from mesh.protocol.models import InstanceStatus

__all__ = ["AgentUsage", "InstanceUsageRow", "UsageReport", "build_usage"]

HOUR = 3600.0


class _Report(BaseModel):
    model_config = ConfigDict(frozen=True, defer_build=True)


def _add(into: dict[str, float], values: dict[str, float]) -> None:
    for name, value in values.items():
        into[name] = into.get(name, 0.0) + value


class InstanceUsageRow(_Report):
    """One instance's totals, and its average rate per hour between first and last heartbeat."""

    agent_uri: str
    instance: str
    status: str
    first_seen: datetime
    last_seen: datetime
    totals: dict[str, float] = Field(default_factory=dict)
    per_hour: dict[str, float] = Field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "instance": self.instance,
            "status": self.status,
            "first_seen": self.first_seen.isoformat(),
            "last_seen": self.last_seen.isoformat(),
            "totals": self.totals,
            "per_hour": self.per_hour,
        }


class AgentUsage(_Report):
    """An agent's totals across all its instances (stopped ones included), as policies count them."""

    agent_uri: str
    totals: dict[str, float] = Field(default_factory=dict)
    per_hour: dict[str, float] = Field(default_factory=dict)
    instances: list[InstanceUsageRow] = Field(default_factory=list)
    #: Per counter limit of each policy on this agent: limit, spent, leased out, left.
    budgets: list[BudgetRow] = Field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "agent_uri": self.agent_uri,
            "totals": self.totals,
            "per_hour": self.per_hour,
            "budgets": [b.to_json() for b in self.budgets],
            "instances": [i.to_json() for i in self.instances],
        }


class UsageReport(_Report):
    pattern: str
    since: datetime | None = None
    agents: list[AgentUsage] = Field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "pattern": self.pattern,
            "since": self.since.isoformat() if self.since else None,
            "agents": [a.to_json() for a in self.agents],
        }


def _row(s: InstanceStatus) -> InstanceUsageRow:
    # At least a second, so that an instance heard from once does not show an absurd rate.
    hours = max(1.0, (s.last_seen - s.first_seen).total_seconds()) / HOUR
    return InstanceUsageRow(
        agent_uri=s.agent_uri,
        instance=s.instance,
        status=s.status.value,
        first_seen=s.first_seen,
        last_seen=s.last_seen,
        totals=dict(s.usage),
        per_hour={name: round(value / hours, 4) for name, value in s.usage.items()},
    )


def build_usage(
    pattern: str,
    statuses: list[InstanceStatus],
    since: datetime | None,
    budgets: Callable[[str, list[InstanceStatus]], list[BudgetRow]] | None = None,
) -> UsageReport:
    """Group instances by agent; ``since`` keeps instances heard from since then.

    ``budgets`` gives an agent's budget rows from all its instances (see :mod:`mesh.protocol.budgets`).
    """
    agents: dict[str, list[InstanceUsageRow]] = {}
    everyone: dict[str, list[InstanceStatus]] = {}
    for s in statuses:
        everyone.setdefault(s.agent_uri, []).append(s)
        if since is not None and s.last_seen < since:
            continue
        agents.setdefault(s.agent_uri, []).append(_row(s))
    out: list[AgentUsage] = []
    for uri, rows in sorted(agents.items()):
        totals: dict[str, float] = {}
        rates: dict[str, float] = {}
        for row in rows:
            _add(totals, row.totals)
            _add(rates, row.per_hour)
        rows_b = budgets(uri, everyone[uri]) if budgets is not None else []
        out.append(AgentUsage(agent_uri=uri, totals=totals, per_hour=rates, instances=rows, budgets=rows_b))
    return UsageReport(pattern=pattern, since=since, agents=out)

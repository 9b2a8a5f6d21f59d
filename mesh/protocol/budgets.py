"""Budget rows for ``mesh usage`` (pure): per agent and counter limit, the limit, spent, leased out, left."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

from mesh.protocol import quota
from mesh.protocol.models import InstanceStatus
from mesh.protocol.policy import Policy
from mesh.protocol.subjects import Namespace
from mesh.protocol.target import parse_agent_uri, parse_target

__all__ = ["BudgetRow", "budget_rows"]


class BudgetRow(BaseModel):
    """One budget of one agent. ``spent + leased_out + left == limit`` while nothing overshoots.

    ``spent`` is what the instances reported in heartbeats: their totals for a limit without a
    window, and for a rate window what the controller saw spent in the window when it last
    granted. ``leased_out`` is granted but not yet reported spent; ``left`` may still be granted.
    """

    model_config = ConfigDict(frozen=True, defer_build=True)

    policy: str
    limit: str
    counter: str
    value: float
    window: float | None
    action: str
    dry_run: bool
    spent: float
    leased_out: float
    left: float

    def to_json(self) -> dict[str, Any]:
        return self.model_dump()


def budget_rows(
    ns: Namespace,
    agent_uri: str,
    policies: Sequence[Policy],
    ledgers: Mapping[str, quota.Ledger],
    instances: Sequence[InstanceStatus],
    now: float,
) -> list[BudgetRow]:
    """The budgets that cover ``agent_uri``, from the policies, the quota ledgers and the instances."""
    agent = parse_agent_uri(agent_uri)
    rows: list[BudgetRow] = []
    for policy in sorted(policies, key=lambda p: p.name):
        if not parse_target(policy.target).matches(agent):
            continue
        for limit in policy.budgets():
            ledger = ledgers.get(ns.budget_key(policy.name, limit.counter, limit.window, agent))
            granted = quota.counted(ledger, now) if ledger is not None else 0.0
            if limit.window is None:
                spent = sum(i.usage.get(limit.counter, 0.0) for i in instances)
            else:
                spent = ledger.spent if ledger is not None else 0.0
            rows.append(
                BudgetRow(
                    policy=policy.name,
                    limit=str(limit),
                    counter=limit.counter,
                    value=limit.value,
                    window=limit.window,
                    action=policy.action,
                    dry_run=policy.dry_run,
                    spent=spent,
                    leased_out=max(0.0, granted - spent),
                    left=max(0.0, limit.value - max(granted, spent)),
                )
            )
    return rows

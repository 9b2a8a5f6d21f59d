"""Carrying out a policy breach: kill or pause the agent, or only report it (alert, dry run)."""

from __future__ import annotations

from typing import Any

import structlog

from controller.stats import Stats
from mesh.errors import MeshError, RevisionConflict
from mesh.protocol.codec import encode
from mesh.protocol.killcommand import policy_kill_command
from mesh.protocol.models import AuditEvent, EventType
from mesh.protocol.policy import Limit, Policy
from mesh.protocol.target import AgentURI
from mesh.transport import kvops
from mesh.transport.audit import publish_event
from mesh.transport.connection import Connection
from mesh.transport.natstypes import KeyValue

__all__ = ["RECHECK", "REPORT_EVERY", "Enforcer"]

log = structlog.get_logger("controller.policies")

#: After a kill (or finding a record in force), the agent's key is not tried again for this long.
RECHECK = 1.0
#: An alert or a dry run is reported at most this often per policy and agent (the breach persists).
REPORT_EVERY = 60.0


class Enforcer:
    """Shared by the policy engine (breaches seen in heartbeats) and quota leases (a budget gone)."""

    def __init__(self, conn: Connection, control_kv: KeyValue, stats: Stats) -> None:
        self.conn = conn
        self.control_kv = control_kv
        self.stats = stats
        #: (policy, control key) -> time before which it is not acted on again.
        self._holding: dict[tuple[str, str], float] = {}

    async def act(
        self, policy: Policy, agent: AgentURI, limit: Limit, observed: float, reason: str, now: float
    ) -> None:
        """Do what ``policy`` says about a breach of ``limit`` by ``agent``; never raises on I/O."""
        key = ".".join(agent.tokens)
        held = (policy.name if not policy.enforces else "", key)
        if self._holding.get(held, 0.0) > now:
            return
        if not policy.enforces:
            self._holding[held] = now + REPORT_EVERY
            await self._report(policy, agent, key, limit, observed, reason)
            return
        self._holding[held] = now + RECHECK
        await self._halt(policy, agent, key, limit, observed, reason)

    async def _report(
        self, policy: Policy, agent: AgentURI, key: str, limit: Limit, observed: float, reason: str
    ) -> None:
        if policy.dry_run:
            self.stats.policy_dry_runs += 1
            log.warning("policy breached (dry run: nothing done)", agent=str(agent), policy=policy.name)
        else:
            self.stats.policy_alerts += 1
            log.warning("policy breached (alert)", agent=str(agent), policy=policy.name, reason=reason)
        await self._audit(
            [self._violation(policy, agent, key, limit, observed, reason, command_id=None, revision=None)]
        )

    async def _halt(
        self, policy: Policy, agent: AgentURI, key: str, limit: Limit, observed: float, reason: str
    ) -> None:
        """Kill exactly this agent (its own key, never the policy's pattern), unless a record is in force."""
        command = policy_kill_command(
            agent,
            policy=policy.name,
            policy_action=policy.action,
            actor=policy.actor,
            reason=reason,
            grace=policy.grace,
        )
        try:
            # create, not put: a record already in force (ours or an operator's) is never replaced,
            # so a policy never re-kills and never rewrites who stopped the agent.
            revision = await kvops.create(self.control_kv, command.key, encode(command.record))
        except RevisionConflict:
            return
        except Exception as exc:
            self._holding.pop((policy.name if not policy.enforces else "", key), None)
            log.warning("policy kill failed, will retry", key=key, policy=policy.name, error=repr(exc))
            return
        self.stats.policy_kills += 1
        log.warning("policy breached: agent killed", agent=str(agent), policy=policy.name, reason=reason)
        kill = command.event(revision)
        violation = self._violation(
            policy,
            agent,
            key,
            limit,
            observed,
            reason,
            command_id=command.record.command_id,
            revision=revision,
        )
        await self._audit([kill, violation])

    @staticmethod
    def _violation(
        policy: Policy,
        agent: AgentURI,
        key: str,
        limit: Limit,
        observed: float,
        reason: str,
        *,
        command_id: str | None,
        revision: int | None,
    ) -> AuditEvent:
        data: dict[str, Any] = {
            "policy": policy.name,
            "pattern": policy.target,
            "limit": str(limit),
            "observed": observed,
            "action": policy.action,
            "dry_run": policy.dry_run,
            "key": key,
        }
        if policy.dry_run:
            data["would"] = policy.action
        return AuditEvent(
            type=EventType.POLICY_VIOLATION,
            target=str(agent),
            agent_uri=str(agent),
            actor=policy.actor,
            reason=reason,
            command_id=command_id,
            revision=revision,
            data=data,
        )

    async def _audit(self, events: list[AuditEvent]) -> None:
        for event in events:
            try:
                await publish_event(self.conn.js, self.conn.ns, event, timeout=2.0)
            except MeshError as exc:
                log.warning("could not audit a policy action", type=event.type.value, error=str(exc))

"""The policy engine: evaluate policies on usage changes and on a tick; a breach writes a kill record."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import nats.js.errors
import structlog
from nats.js.kv import KeyValue

from controller.policybook import PolicyBook
from controller.state import Fleet
from controller.stats import Stats
from controller.usage import BASELINE, UsageSamples
from mesh.aio import raise_if_cancelling, wait_for
from mesh.audit import publish_event
from mesh.codec import encode
from mesh.connection import Connection
from mesh.errors import InvalidTarget, MeshError
from mesh.models import LIVE_STATUSES, AuditEvent, EventType, Heartbeat, KillRecord
from mesh.policy import Breach, InstanceUsage, Policy, evaluate
from mesh.target import AgentURI, parse_agent_uri

__all__ = ["PolicyEngine"]

log = structlog.get_logger("controller.policies")

#: After a kill (or finding a record in force), the agent's key is not tried again for this long.
RECHECK = 1.0


class PolicyEngine:
    """Fed by ingest (``on_heartbeat``, the hot path: a dict compare); acts in :meth:`run`.

    Only agents whose usage changed are evaluated as heartbeats arrive; every agent a policy
    covers is evaluated on the tick, for the limits that move with time alone (instances,
    runtime, silence) and for windows that slide.
    """

    def __init__(
        self,
        conn: Connection,
        control_kv: KeyValue,
        fleet: Fleet,
        stats: Stats,
        *,
        may_act: Callable[[], bool],
        reload_every: float = 1.0,
        tick_every: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.conn = conn
        self.control_kv = control_kv
        self.fleet = fleet
        self.stats = stats
        self.may_act = may_act
        self.reload_every = reload_every
        self.tick_every = tick_every
        self.clock = clock
        self.book = PolicyBook(conn, stats)
        self.usage = UsageSamples()
        self.dirty: set[str] = set()
        self.wake = asyncio.Event()
        #: Control key -> time before which it is not tried again.
        self._holding: dict[str, float] = {}

    # -- hot path -------------------------------------------------------------------------------
    def on_heartbeat(self, key: str, hb: Heartbeat, now: float) -> None:
        if self.usage.observe(key, hb, now) and self.book.policies:
            self.dirty.add(hb.agent_uri)
            self.wake.set()

    # -- loop -----------------------------------------------------------------------------------
    async def run(self) -> None:
        next_reload = next_tick = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                await wait_for(self.wake.wait(), min(self.reload_every, self.tick_every))
            self.wake.clear()
            mono = time.monotonic()
            try:
                if mono >= next_reload:
                    next_reload = mono + self.reload_every
                    await self.book.refresh()
                    self.usage.set_window(self.book.window)
                    self.stats.policies = len(self.book.policies)
                agents = self.dirty
                self.dirty = set()
                if mono >= next_tick:
                    next_tick = mono + self.tick_every
                    agents |= self._regroup()
                if self.book.policies and self.may_act():
                    await self.evaluate(agents)
            except Exception as exc:  # a bug here must not stop enforcement for good
                raise_if_cancelling()
                log.exception("policy evaluation failed", error=str(exc) or type(exc).__name__)

    def _regroup(self) -> set[str]:
        """Index every fleet entry by agent (restored and stopped ones too); forget expired ones."""
        entries = self.fleet.entries
        self.usage.forget(set(entries))
        by_agent = self.usage.by_agent
        for key, e in entries.items():
            by_agent.setdefault(e.agent_uri, set()).add(key)
        return set(by_agent)

    async def evaluate(self, agents: set[str]) -> None:
        now = self.clock()
        for uri in sorted(agents):
            try:
                agent = parse_agent_uri(uri)
            except InvalidTarget:
                continue
            policies = self.book.matching(agent)
            if not policies:
                continue
            instances = self._instances(uri)
            for policy in policies:
                breaches = evaluate(policy, instances, now)
                if breaches:
                    await self._act(policy, agent, breaches[0], now)

    def _instances(self, uri: str) -> list[InstanceUsage]:
        out: list[InstanceUsage] = []
        samples, started = self.usage.samples, self.usage.started
        for key in self.usage.by_agent.get(uri, ()):
            e = self.fleet.entries.get(key)
            if e is None:
                continue
            s = samples.get(key)
            out.append(
                InstanceUsage(
                    instance=e.instance,
                    live=e.status in LIVE_STATUSES,
                    started_at=started.get(key, e.first_seen),
                    last_seen=e.last_seen,
                    samples=s if s else ([(BASELINE, e.usage)] if e.usage else []),
                )
            )
        return out

    # -- acting ---------------------------------------------------------------------------------
    async def _act(self, policy: Policy, agent: AgentURI, breach: Breach, now: float) -> None:
        """Kill exactly this agent (its own key, never the policy's pattern), unless a record is in force."""
        key = ".".join(agent.tokens)
        if self._holding.get(key, 0.0) > now:
            return
        self._holding[key] = now + RECHECK
        action = "raise" if policy.action == "kill" else "pause"
        record = KillRecord(
            target=str(agent), actor=policy.actor, reason=breach.reason, grace=policy.grace, action=action
        )
        try:
            # create, not put: a record already in force (ours or an operator's) is never replaced,
            # so a policy never re-kills and never rewrites who stopped the agent.
            revision = await self.control_kv.create(key, encode(record))
        except nats.js.errors.KeyWrongLastSequenceError:
            return
        except Exception as exc:
            self._holding.pop(key, None)
            log.warning("policy kill failed, will retry", key=key, policy=policy.name, error=repr(exc))
            return
        self.stats.policy_kills += 1
        log.warning(
            "policy breached: agent killed", agent=str(agent), policy=policy.name, reason=breach.reason
        )
        common: dict[str, Any] = {
            "target": str(agent),
            "actor": policy.actor,
            "reason": breach.reason,
            "command_id": record.command_id,
            "revision": revision,
        }
        events = [
            AuditEvent(
                type=EventType.KILL,
                **common,
                data={"key": key, "grace": policy.grace, "action": action, "policy": policy.name},
            ),
            AuditEvent(
                type=EventType.POLICY_VIOLATION,
                agent_uri=str(agent),
                **common,
                data={
                    "policy": policy.name,
                    "pattern": policy.target,
                    "limit": str(breach.limit),
                    "observed": breach.observed,
                    "action": policy.action,
                    "key": key,
                },
            ),
        ]
        for event in events:
            try:
                await publish_event(self.conn.js, self.conn.ns, event, timeout=2.0)
            except MeshError as exc:
                log.warning("could not audit a policy kill", type=event.type.value, error=str(exc))

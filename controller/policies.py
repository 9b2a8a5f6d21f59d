"""The policy engine: evaluate policies on usage changes and on a tick; a breach is acted on (enforce.py)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import structlog

from controller.enforce import Enforcer
from controller.policybook import PolicyBook
from controller.state import Fleet
from controller.stats import Stats
from controller.usage import BASELINE, UsageSamples
from mesh.errors import InvalidTarget
from mesh.protocol.models import LIVE_STATUSES, Heartbeat
from mesh.protocol.policy import Breach, InstanceUsage, Limit, Policy, evaluate, observe
from mesh.protocol.target import AgentURI, parse_agent_uri
from mesh.runtime.aio import raise_if_cancelling, wait_for
from mesh.transport.connection import Connection
from mesh.transport.natstypes import KeyValue

__all__ = ["PolicyEngine"]

log = structlog.get_logger("controller.policies")


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
        self.enforcer = Enforcer(conn, control_kv, stats)
        self.dirty: set[str] = set()
        self.wake = asyncio.Event()

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
                self.stats.policy_evaluations += 1
                if breaches:
                    self.stats.policy_breaches += 1
                    await self._act(policy, agent, breaches[0], now)

    def live_instances(self, uri: str) -> int:
        """How many instances of ``uri`` are live (at least 1: the one asking is)."""
        entries = self.fleet.entries
        live = 0
        for key in self.usage.by_agent.get(uri, ()):
            e = entries.get(key)
            if e is not None and e.status in LIVE_STATUSES:
                live += 1
        return max(1, live)

    def observed(self, uri: str, limit: Limit) -> float:
        """What ``limit`` measures for ``uri`` now, from heartbeats (what ``mesh usage`` calls spent)."""
        return observe(limit, self._instances(uri), self.clock())

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
        await self.enforcer.act(policy, agent, breach.limit, breach.observed, breach.reason, now)

"""Kills, resumes and halts from the audit subjects, for the kill counters and the latency histogram.

A plain core-NATS subscription, not the lifecycle feed's durable consumer: metrics must never hold
up the acked path, and an event missed while disconnected only leaves one sample out.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from controller.metrics import ControllerMetrics
from controller.metrics_kills import actor_kind
from controller.stats import RateLimitedLog
from mesh.errors import MalformedMessage
from mesh.protocol.codec import decode
from mesh.protocol.models import AuditEvent, EventType
from mesh.transport.connection import Connection
from mesh.transport.natstypes import Msg, Subscription

__all__ = ["AuditObserver"]

log = structlog.get_logger("controller.metrics")

#: Events answering a kill: ``halted`` (paused or killed) and ``terminated`` (the grace ran out).
_ACKS = frozenset({EventType.HALTED, EventType.TERMINATED})


class AuditObserver:
    """Feeds :class:`ControllerMetrics` from ``kill``, ``resume``, ``halted`` and ``terminated`` events."""

    def __init__(
        self, conn: Connection, metrics: ControllerMetrics, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.conn = conn
        self.metrics = metrics
        self.clock = clock
        self._subs: list[Subscription] = []
        self._warn = RateLimitedLog(log)

    async def start(self) -> None:
        ns = self.conn.ns
        for etype in (EventType.KILL, EventType.RESUME, EventType.HALTED, EventType.TERMINATED):
            self._subs.append(await self.conn.nc.subscribe(ns.audit_filter(etype.value), cb=self.on_message))

    async def stop(self) -> None:
        for sub in self._subs:
            try:
                await sub.unsubscribe()
            except Exception as exc:
                log.debug("unsubscribe failed", error=str(exc) or type(exc).__name__)
        self._subs.clear()

    async def on_message(self, msg: Msg) -> None:
        self.handle(msg.data)

    def handle(self, data: bytes) -> None:
        """Apply one audit event; a bad one is counted and logged, never raised."""
        try:
            event = decode(AuditEvent, data)
        except MalformedMessage as exc:
            self.metrics.malformed["audit_malformed"] += 1
            self._warn.warning("bad audit event", "audit_malformed", error=str(exc)[:300])
            return
        m = self.metrics
        now = self.clock()
        at = event.time.timestamp()
        if event.type is EventType.KILL:
            m.kills.labels(actor_kind(event.actor)).inc()
            if event.command_id:
                for kind, seconds in m.kill_clock.kill(event.command_id, at, event.actor, now):
                    m.kill_latency.labels(kind).observe(seconds)
        elif event.type is EventType.RESUME:
            m.resumes.labels(actor_kind(event.actor)).inc()
        elif event.type in _ACKS and event.command_id and event.agent_uri and event.instance:
            sample = m.kill_clock.halted(event.command_id, f"{event.agent_uri}#{event.instance}", at, now)
            if sample is not None:
                m.kill_latency.labels(sample[0]).observe(sample[1])

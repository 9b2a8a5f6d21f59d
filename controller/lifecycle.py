"""Lifecycle events (started, halted, stopped...) from the audit stream, through a durable pull consumer."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

import structlog

from controller.state import LIFECYCLE_TYPES, Fleet, Transition
from controller.stats import RateLimitedLog, Stats
from mesh.errors import MalformedMessage
from mesh.protocol.codec import decode
from mesh.protocol.models import AuditEvent
from mesh.runtime.aio import raise_if_cancelling
from mesh.transport.connection import Connection
from mesh.transport.kvops import fetch
from mesh.transport.natstypes import AckPolicy, ConsumerConfig, DeliverPolicy, Msg

__all__ = ["LifecycleFeed", "consumer_config"]

log = structlog.get_logger("controller.lifecycle")

BATCH = 256


def consumer_config(conn: Connection, durable: str) -> ConsumerConfig:
    """A durable that outlives the controller: events published while it was down still arrive."""
    ns = conn.ns
    return ConsumerConfig(
        durable_name=durable,
        description="agent-mesh controller: instance lifecycle events",
        filter_subjects=[ns.audit_filter(t.value) for t in LIFECYCLE_TYPES],
        deliver_policy=DeliverPolicy.NEW,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=30.0,
        max_ack_pending=10_000,
    )


class LifecycleFeed:
    """Fetches lifecycle events in batches, applies them, waits for the resulting writes, then acks.

    Any failure (reconnect, server restart, consumer gone) recreates the consumer and rebinds.
    """

    def __init__(
        self,
        conn: Connection,
        fleet: Fleet,
        stats: Stats,
        on_transition: Callable[[Transition], None],
        flush: Callable[[], Awaitable[bool]],
        *,
        durable: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.conn = conn
        self.fleet = fleet
        self.stats = stats
        self.on_transition = on_transition
        self.flush = flush
        self.durable = durable
        self.clock = clock
        self._warn = RateLimitedLog(log)

    async def run(self) -> None:
        delay = 0.2
        while not self.conn.closed:
            try:
                await self._consume()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                raise_if_cancelling()
                if self.conn.closed:
                    return  # the owner closed the connection: nothing left to consume
                self._warn.warning("lifecycle consumer failed, recreating", "consumer", error=repr(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _consume(self) -> None:
        js = self.conn.js
        stream = self.conn.ns.audit_stream
        await js.add_consumer(stream, consumer_config(self.conn, self.durable))
        psub = await js.pull_subscribe_bind(durable=self.durable, stream=stream)
        try:
            while True:
                msgs = await fetch(psub, BATCH, timeout=1.0)
                if not msgs:
                    continue
                await self._apply(msgs)
        finally:
            with contextlib.suppress(Exception):
                await psub.unsubscribe()

    async def _apply(self, msgs: list[Msg]) -> None:
        now = self.clock()
        for msg in msgs:
            try:
                event = decode(AuditEvent, msg.data)
            except MalformedMessage as exc:
                self.stats.bad["lifecycle_malformed"] += 1
                self._warn.warning("bad lifecycle event", "malformed", subject=msg.subject, error=str(exc))
                continue
            parts = msg.subject.split(".")
            key = ".".join(parts[2:6])
            body_key = (
                f"{(event.agent_uri or '').removeprefix('agent://').replace('/', '.')}.{event.instance}"
            )
            if len(parts) != 7 or body_key != key or parts[6] != event.type.value:
                self.stats.bad["lifecycle_mismatch"] += 1
                self._warn.warning(
                    "lifecycle event disagrees with its subject", "mismatch", subject=msg.subject
                )
                continue
            self.stats.lifecycle_events += 1
            transition = self.fleet.lifecycle(key, event, now)
            if transition is not None:
                self.on_transition(transition)
        # The status records must be durable before the events are acked.
        while not await self.flush():
            await asyncio.sleep(0.2)
        for msg in msgs:
            await msg.ack()

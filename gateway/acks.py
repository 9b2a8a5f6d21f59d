"""Acknowledging kills and resumes for the instances the gateway serves, as the SDK does for its own.

When a kill lands, every in-use instance it covers has been refused and its streams and tunnels
cut (synchronously, before this runs), so the gateway answers for it with a ``halted`` event
(status ``paused``: it is refused until resumed, and there is nothing of it left running here).
When a record clears and an instance may act again, ``resumed``. ``mesh kill`` and ``mesh resume``
then list gateway-served instances among those that answered, not as silent.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import structlog

from gateway.errors import Refused
from gateway.keys import Identity
from gateway.kills import InForce
from gateway.meter import Meter
from gateway.tracker import KillTracker
from mesh.errors import InvalidTarget, MeshError
from mesh.protocol.models import AuditEvent, EventType, HaltAck
from mesh.protocol.subjects import key_to_target
from mesh.transport.audit import publish_event
from mesh.transport.connection import Connection

__all__ = ["GatewayAcks", "halted_event"]

log = structlog.get_logger("gateway.acks")


def halted_event(ident: Identity, held: InForce, ack: HaltAck | None = None) -> AuditEvent:
    """The ``halted`` answer to one kill record; its id is derived as the SDK's is, so a retry is
    deduplicated. ``ack`` is what the instance says (by default the gateway's own: paused)."""
    rec = held.record
    seed = f"halted:{rec.command_id}:{held.revision}:{ident.agent_uri}:{ident.instance}"
    if ack is None:
        ack = HaltAck(status="paused", metadata={"via": "gateway", "key_id": ident.key_id}, kill_key=held.key)
    return AuditEvent(
        id=hashlib.sha1(seed.encode()).hexdigest(),
        type=EventType.HALTED,
        target=rec.target,
        agent_uri=ident.agent_uri,
        instance=ident.instance,
        actor=rec.actor,
        reason=rec.reason,
        command_id=rec.command_id,
        revision=held.revision,
        data=ack.model_dump(mode="json"),
    )


class GatewayAcks:
    def __init__(self, conn: Connection, tracker: KillTracker, meter: Meter) -> None:
        self.conn = conn
        self.tracker = tracker
        self.meter = meter
        self._bg: set[asyncio.Task[Any]] = set()
        tracker.on_kill.append(self.on_kill)
        tracker.on_clear.append(self.on_clear)

    def on_kill(self, held: InForce) -> None:
        try:
            target = key_to_target(held.key)
        except InvalidTarget:
            return
        events = [halted_event(i, held) for i in self.meter.served() if target.matches(i.agent, i.instance)]
        if events:
            self._spawn(self._publish(events))

    def on_clear(self, _key: str) -> None:
        events: list[AuditEvent] = []
        for ident in self.meter.served():
            try:
                self.tracker.check(ident.agent, ident.instance)
            except Refused:
                continue
            if self.meter.was_refused(ident):
                events.append(
                    AuditEvent(
                        type=EventType.RESUMED,
                        target=ident.agent_uri,
                        agent_uri=ident.agent_uri,
                        instance=ident.instance,
                        actor="gateway",
                        data={"via": "gateway"},
                    )
                )
        if events:
            self._spawn(self._publish(events))

    async def _publish(self, events: list[AuditEvent]) -> None:
        for event in events:
            try:
                await publish_event(self.conn.js, self.conn.ns, event, timeout=2.0)
            except MeshError as exc:
                log.warning(
                    "could not acknowledge", type=event.type.value, agent=event.agent_uri, error=str(exc)
                )
        self.meter.refresh_status()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)

    async def stop(self) -> None:
        for task in list(self._bg):
            task.cancel()

"""Collecting the acknowledgements of one kill or resume until every expected instance answered."""

from __future__ import annotations

import asyncio
import contextlib

from nats.aio.msg import Msg

from mesh.errors import InvalidTarget, MalformedMessage
from mesh.protocol.codec import decode
from mesh.protocol.killcommand import AckMatch, InstanceId
from mesh.protocol.models import AuditEvent
from mesh.protocol.reports import AckRow
from mesh.protocol.target import Target, parse_agent_uri
from mesh.runtime.aio import wait_for

__all__ = ["AckCollector", "InstanceId"]


class AckCollector:
    """Gathers acknowledgement events for one command until every expected instance answered.

    O(1) per acknowledgement: an agent URI is parsed once per collector (not once per event),
    and completion is tracked with the set of instances still outstanding.
    """

    def __init__(self, target: Target, match: AckMatch) -> None:
        self.target = target
        self.match = match
        self.rows: dict[InstanceId, AckRow] = {}
        #: Events about matching instances that ``match`` refused: maybe ours once the
        #: command's revision is known (:meth:`known_revision`), so they are looked at again.
        self.pending: list[AuditEvent] = []
        self.waiting: set[InstanceId] | None = None
        self.outstanding: set[InstanceId] = set()
        self._agents: dict[str, bool] = {}
        self._agent_part = target.with_instance(None)
        self.done = asyncio.Event()

    async def on_msg(self, msg: Msg) -> None:
        try:
            event = decode(AuditEvent, msg.data)
        except MalformedMessage:
            return
        if self.pending:
            self.evaluate()
        self._take(event)

    def _matches(self, agent_uri: str, instance: str) -> bool:
        ok = self._agents.get(agent_uri)
        if ok is None:
            try:
                ok = self._agent_part.matches(parse_agent_uri(agent_uri))
            except InvalidTarget:
                ok = False
            if len(self._agents) < 100_000:
                self._agents[agent_uri] = ok
        return ok and (self.target.instance is None or self.target.instance == instance)

    def _take(self, event: AuditEvent) -> None:
        if not event.agent_uri or not event.instance:
            return
        if not self._matches(event.agent_uri, event.instance):
            return
        if not self.match.accepts(event):
            self.pending.append(event)  # maybe ours once the revision is known
            return
        data = event.data or {}
        status = str(data.get("status") or event.type.value)
        ident = (event.agent_uri, event.instance)
        self.rows[ident] = AckRow(
            agent_uri=event.agent_uri,
            instance=event.instance,
            status=status,
            metadata=dict(data.get("metadata") or {}),
            checkpoint=data.get("checkpoint"),
            time=event.time,
        )
        if self.waiting:
            self.outstanding.discard(ident)
            if not self.outstanding:
                self.done.set()

    def known_revision(self, revision: int) -> None:
        """The command's KV revision is known: events naming it are ours from now on."""
        self.match = self.match.at(revision)
        self.evaluate()

    def evaluate(self) -> None:
        """Look again at the events ``match`` refused so far."""
        pending, self.pending = self.pending, []
        for event in pending:
            self._take(event)

    def expect(self, waiting: set[InstanceId]) -> None:
        self.waiting = waiting
        self.outstanding = waiting - self.rows.keys()
        if waiting and not self.outstanding:
            self.done.set()
        self.evaluate()

    async def wait(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await wait_for(self.done.wait(), timeout)

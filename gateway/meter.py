"""Usage the gateway saw, per agent instance, reported as heartbeats the controller's policies read.

The gateway speaks for each instance it serves: a heartbeat (``sdk_version`` ``gateway/…``) with
its monotonic usage totals, right after usage changes (coalesced) and every ``interval`` while
the instance is in use; after ``idle_after`` without a request, one last ``stopped`` heartbeat.
Totals start from what the instances bucket already holds for the instance, so a gateway
restart does not make them go down (the controller would take that for a new process).
Refusals are audited from here too, one event per group per ``refusal_window``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from gateway.keys import Identity
from gateway.refusals import Refusals
from mesh.errors import MeshError
from mesh.protocol.codec import encode
from mesh.protocol.models import Heartbeat, InstanceStatus, Status, utcnow
from mesh.runtime.aio import raise_if_cancelling, wait_for
from mesh.transport.audit import publish_event
from mesh.transport.connection import Connection
from mesh.transport.kvscan import read_latest

__all__ = ["GATEWAY_SDK", "Meter"]

log = structlog.get_logger("gateway.meter")

GATEWAY_SDK = "gateway/0.1"


@dataclass(slots=True)
class _Instance:
    identity: Identity
    totals: dict[str, float] = field(default_factory=dict)
    seeded: bool = False
    dirty: bool = True
    last_used: float = 0.0
    last_sent: float = 0.0
    seq: int = 0
    #: The status of the last heartbeat: paused while a kill record refuses the instance.
    status: Status = Status.ACTIVE


class Meter:
    def __init__(
        self,
        conn: Connection,
        *,
        interval: float = 5.0,
        idle_after: float = 60.0,
        flush_every: float = 0.25,
        refusal_window: float = 2.0,
        actor: str = "gateway",
        is_refused: Callable[[Identity], bool] | None = None,
        max_instances: int = 256,
    ) -> None:
        self.conn = conn
        self.interval = interval
        self.idle_after = idle_after
        self.flush_every = flush_every
        self.refusal_window = refusal_window
        self.actor = actor
        self.is_refused = is_refused or (lambda _ident: False)
        self.max_instances = max_instances
        self._per_agent: dict[str, int] = {}
        self.refusals = Refusals()
        self._instances: dict[str, _Instance] = {}
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.started = utcnow()

    def _key(self, ident: Identity) -> str:
        return f"{ident.agent_uri}#{ident.instance}"

    # -- recording (hot path: no I/O) --------------------------------------------------------------
    def touch(self, ident: Identity) -> bool:
        """Note that this instance is in use (it gets heartbeats while it is).

        False for a new instance of an agent that already has ``max_instances`` in use: instance
        ids come from a header, and a client must not make the gateway speak for a million.
        """
        inst = self._instances.get(self._key(ident))
        if inst is None:
            if self._per_agent.get(ident.agent_uri, 0) >= self.max_instances:
                return False
            inst = self._instances[self._key(ident)] = _Instance(ident)
            self._per_agent[ident.agent_uri] = self._per_agent.get(ident.agent_uri, 0) + 1
            self._wake.set()
        inst.last_used = time.monotonic()
        return True

    def add(self, ident: Identity, counters: dict[str, float]) -> None:
        inst = self._instances.get(self._key(ident))
        if inst is None:
            if not self.touch(ident):
                return  # admitted before the cap was reached elsewhere: not metered, logged by admit
            inst = self._instances[self._key(ident)]
        for name, value in counters.items():
            if value:
                inst.totals[name] = inst.totals.get(name, 0.0) + value
        inst.dirty = True
        self._wake.set()

    def served(self) -> list[Identity]:
        """The instances in use (they get heartbeats, and kill acknowledgements)."""
        return [inst.identity for inst in self._instances.values()]

    def was_refused(self, ident: Identity) -> bool:
        inst = self._instances.get(self._key(ident))
        return inst is not None and inst.status == Status.PAUSED

    def refresh_status(self) -> None:
        """A kill or resume landed: send every instance's heartbeat again soon, with its status."""
        for inst in self._instances.values():
            inst.dirty = True
        self._wake.set()

    def totals(self, ident: Identity) -> dict[str, float]:
        inst = self._instances.get(self._key(ident))
        return dict(inst.totals) if inst else {}

    # -- reporting -----------------------------------------------------------------------------
    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._heartbeats(), name="gateway meter"),
            asyncio.create_task(self._audit_refusals(), name="gateway refusals"),
        ]

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await wait_for(self.flush(final=True), 3.0)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task

    async def _heartbeats(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await wait_for(self._wake.wait(), self.flush_every)
            self._wake.clear()
            await asyncio.sleep(self.flush_every)  # coalesce a burst into one heartbeat
            try:
                await self.flush()
            except Exception as exc:
                raise_if_cancelling()
                log.warning("usage report failed, will retry", error=str(exc) or type(exc).__name__)

    async def flush(self, *, final: bool = False) -> None:
        now = time.monotonic()
        for key, inst in list(self._instances.items()):
            if not inst.seeded:
                await self._seed(inst)
            idle = now - inst.last_used > self.idle_after
            due = inst.dirty or now - inst.last_sent >= self.interval or idle or final
            if not due:
                continue
            if idle or final:
                status = Status.STOPPED
            else:
                status = Status.PAUSED if self.is_refused(inst.identity) else Status.ACTIVE
            await self._send(inst, status)
            if idle:
                del self._instances[key]
                left = self._per_agent.get(inst.identity.agent_uri, 1) - 1
                if left > 0:
                    self._per_agent[inst.identity.agent_uri] = left
                else:
                    self._per_agent.pop(inst.identity.agent_uri, None)

    async def _seed(self, inst: _Instance) -> None:
        """Start from the totals the controller last recorded, so they never go down."""
        ident = inst.identity
        key = self.conn.ns.instance_key(ident.agent, ident.instance)
        try:
            latest = await read_latest(self.conn, self.conn.ns.instances_bucket, [key], timeout=2.0)
        except MeshError as exc:
            log.warning("could not read recorded usage; will retry", instance=key, error=str(exc))
            raise
        entry = (latest or {}).get(key)
        if entry is not None and entry.value is not None:
            with contextlib.suppress(ValueError):
                recorded = InstanceStatus.model_validate_json(entry.value).usage
                for name, value in recorded.items():
                    inst.totals[name] = inst.totals.get(name, 0.0) + value
        inst.seeded = True

    async def _send(self, inst: _Instance, status: Status) -> None:
        ident = inst.identity
        inst.seq += 1
        hb = Heartbeat(
            agent_uri=ident.agent_uri,
            instance=ident.instance,
            status=status,
            seq=inst.seq,
            started_at=self.started,
            interval=self.interval,
            sdk_version=GATEWAY_SDK,
            hard_kill=False,
            metadata={"via": "gateway", "key_id": ident.key_id},
            usage=dict(inst.totals),
        )
        subject = self.conn.ns.heartbeat_subject(ident.agent, ident.instance)
        await self.conn.nc.publish(subject, encode(hb))
        inst.dirty = False
        inst.status = status
        inst.last_sent = time.monotonic()

    async def _audit_refusals(self) -> None:
        while True:
            await asyncio.sleep(self.refusal_window)
            await self.flush_refusals()

    async def flush_refusals(self) -> None:
        for event in self.refusals.drain(self.actor):
            try:
                await publish_event(self.conn.js, self.conn.ns, event, timeout=2.0)
            except MeshError as exc:
                log.warning("could not audit refusals", agent=event.agent_uri, error=str(exc))

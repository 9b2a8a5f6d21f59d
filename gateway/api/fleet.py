"""HTTP agents: what the gateway says and publishes for each, as the SDK does for its own instance.

A heartbeat is answered from the gateway's kill tracker (no I/O for the answer) and published
on the instance's heartbeat subject, so the controller gives it the same statuses (active,
paused, stale, lost, stopped) as an SDK agent. The lifecycle events the SDK publishes are
published here, in a hash chain per instance: ``started`` on an instance's first heartbeat,
``halted`` when it acknowledges (``POST /api/v1/halted``), ``resumed`` when it is next told it
may act again, ``stopped``/``crashed`` when its heartbeat says so. Long-polls are woken from the
tracker's own callbacks, the moment a kill lands.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from gateway.api import checkpoints
from gateway.api.checkpoints import HINT
from gateway.api.events import halted_event, lifecycle_event, record_json
from gateway.api.models import CheckpointIn, HaltedIn, HeartbeatIn
from gateway.errors import Conflict, Unavailable
from gateway.keys import Identity
from gateway.kills import InForce
from gateway.tracker import SYNC_WAIT, KillTracker
from mesh.errors import InvalidTarget, MeshError
from mesh.protocol.codec import encode
from mesh.protocol.models import AuditEvent, Checkpoint, EventType, Heartbeat, Status, utcnow
from mesh.protocol.subjects import key_to_target
from mesh.protocol.target import AgentURI
from mesh.runtime.aio import wait_for
from mesh.transport.audit import AuditChain, publish_event
from mesh.transport.connection import Connection

__all__ = ["HTTP_SDK", "HttpAgents"]


log = structlog.get_logger("gateway.api")

HTTP_SDK = "http/1"
#: Instances remembered; the least recently seen is forgotten first (it re-announces ``started``).
MAX_INSTANCES = 100_000
#: Seconds within which a heartbeat whose status and kill records did not change is published:
#: an agent may ask before every action, and NATS then carries at most a few heartbeats a second
#: per instance, the latest metadata and usage in each (as the SDK publishes on its own timer).
FLUSH_EVERY = 0.25


@dataclass(slots=True)
class HttpInstance:
    ident: Identity
    agent: AgentURI
    subject: str
    started_at: datetime = field(default_factory=utcnow)
    chain: AuditChain = field(default_factory=AuditChain)
    seq: int = 0
    on_kill: str = "pause"
    #: command_id -> the status it acknowledged with (``paused`` or ``killed``).
    acked: dict[str, str] = field(default_factory=dict)
    started: bool = False
    ckpt_seq: int | None = None
    last_seen: float = 0.0
    waiters: set[asyncio.Future[None]] = field(default_factory=set)
    #: The newest heartbeat not yet published (the flusher sends it within FLUSH_EVERY).
    pending: Heartbeat | None = None
    #: What the last published heartbeat said: a change of either is published at once.
    sent_status: Status | None = None
    sent_keys: list[str] = field(default_factory=list)


class HttpAgents:
    def __init__(self, tracker: KillTracker, conn: Connection) -> None:
        self.tracker = tracker
        #: The connection it publishes on: the ``agent`` role's when the API has one configured.
        self.conn = conn
        self.ns = conn.ns
        self._instances: OrderedDict[str, HttpInstance] = OrderedDict()
        tracker.on_kill.append(self.on_kill)
        tracker.on_clear.append(self.on_clear)
        tracker.on_fail_closed.append(self._wake_all)
        self._dirty: set[str] = set()
        self._flush = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._flusher(), name="api heartbeats")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        with contextlib.suppress(Exception):
            await self._flush_pending()

    async def _flusher(self) -> None:
        while True:
            await self._flush.wait()
            self._flush.clear()
            await asyncio.sleep(FLUSH_EVERY)  # coalesce: one publish per instance per period
            try:
                await self._flush_pending()
            except Exception as exc:
                log.warning("publishing HTTP agents' heartbeats failed; will retry", error=str(exc))

    async def _flush_pending(self) -> None:
        dirty, self._dirty = self._dirty, set()
        for key in dirty:
            inst = self._instances.get(key)
            if inst is not None and inst.pending is not None:
                await self._send(inst, inst.pending)

    async def _send(self, inst: HttpInstance, hb: Heartbeat) -> None:
        inst.pending = None
        await self.conn.nc.publish(inst.subject, encode(hb))
        inst.sent_status = hb.status
        inst.sent_keys = hb.kill_keys

    # -- instances ------------------------------------------------------------------------------
    def instance(self, ident: Identity) -> HttpInstance:
        key = f"{ident.agent_uri}#{ident.instance}"
        inst = self._instances.get(key)
        if inst is None:
            agent = ident.agent
            inst = HttpInstance(ident, agent, self.ns.heartbeat_subject(agent, ident.instance))
            self._instances[key] = inst
            if len(self._instances) > MAX_INSTANCES:
                self._instances.popitem(last=False)
        else:
            self._instances.move_to_end(key)
        inst.last_seen = time.monotonic()
        return inst

    def forget(self, inst: HttpInstance) -> None:
        self._instances.pop(f"{inst.ident.agent_uri}#{inst.ident.instance}", None)

    # -- the answer (no I/O) ----------------------------------------------------------------------
    async def _synced(self) -> None:
        t = self.tracker
        if not t.synced.is_set() and not t.fail_closed:
            with contextlib.suppress(TimeoutError):
                await wait_for(t.synced.wait(), SYNC_WAIT)

    def held(self, inst: HttpInstance) -> list[InForce] | None:
        """The records in force over the instance; None when the gateway cannot tell (fail closed)."""
        t = self.tracker
        if t.fail_closed or not t.synced.is_set():
            return None
        return t.book.all_matching(inst.agent, inst.ident.instance)

    def answer(self, inst: HttpInstance) -> dict[str, Any]:
        held = self.held(inst)
        base = {"agent_uri": inst.ident.agent_uri, "instance": inst.ident.instance}
        if held is None:
            return {**base, "killed": True, "action": "pause", "record": None, "records": [],
                    "fail_closed": True, "acknowledged": False}  # fmt: skip
        records = [record_json(h) for h in held]
        first = held[0] if held else None
        return {
            **base,
            "killed": first is not None,
            "action": (first.record.action or inst.on_kill) if first is not None else None,
            "record": records[0] if records else None,
            "records": records,
            "fail_closed": False,
            "acknowledged": bool(held) and all(h.record.command_id in inst.acked for h in held),
        }

    # -- heartbeat ------------------------------------------------------------------------------
    async def heartbeat(self, ident: Identity, body: HeartbeatIn) -> dict[str, Any]:
        await self._synced()
        inst = self.instance(ident)
        inst.on_kill = body.on_kill
        held = self.held(inst)
        await self._announce(inst, held)
        answer = self.answer(inst)
        if not answer["killed"] and inst.acked:
            await self._resumed(inst)
        status = Status(body.status) if body.status else self._status(inst, held)
        inst.seq += 1
        # Every field is already validated (the body by HeartbeatIn): construct, do not re-validate.
        hb = Heartbeat.model_construct(
            v=1,
            time=utcnow(),
            host="",
            pid=0,
            agent_uri=ident.agent_uri,
            instance=ident.instance,
            status=status,
            seq=inst.seq,
            started_at=inst.started_at,
            interval=body.interval,
            sdk_version=HTTP_SDK,
            hard_kill=False,
            on_kill="pause" if body.on_kill == "pause" else "raise",
            metadata={**body.metadata, "via": "http", "key_id": ident.key_id},
            kill_keys=[h.key for h in held or []],
            usage=body.usage,
        )
        final = status in (Status.STOPPED, Status.CRASHED)
        if final or status is not inst.sent_status or hb.kill_keys != inst.sent_keys:
            try:
                await self._send(inst, hb)  # a change: the controller hears of it now
            except Exception as exc:
                raise Unavailable(
                    f"cannot publish the heartbeat to NATS right now ({type(exc).__name__})"
                ) from None
        else:
            inst.pending = hb
            self._dirty.add(f"{ident.agent_uri}#{ident.instance}")
            self._flush.set()
        if final:
            await self._lifecycle(
                inst, EventType.STOPPED if status is Status.STOPPED else EventType.CRASHED, held
            )
            self.forget(inst)
        return answer

    def _status(self, inst: HttpInstance, held: list[InForce] | None) -> Status:
        if held and all(h.record.command_id in inst.acked for h in held):
            return (
                Status.KILLED
                if "killed" in {inst.acked[h.record.command_id] for h in held}
                else Status.PAUSED
            )
        return Status.ACTIVE

    async def _announce(self, inst: HttpInstance, held: list[InForce] | None) -> None:
        """``started``, once: marked first, so concurrent first requests do not both announce it."""
        if inst.started:
            return
        inst.started = True
        try:
            await self._lifecycle(inst, EventType.STARTED, held)
        except BaseException:
            inst.started = False  # not stored: the next request announces it again
            raise

    async def _lifecycle(self, inst: HttpInstance, etype: EventType, held: list[InForce] | None) -> None:
        data: dict[str, Any] = {}
        if etype is EventType.STARTED:
            data = {"kill_keys": [h.key for h in held or []], "hard_kill": False, "on_kill": inst.on_kill}
        await self._publish(inst, lifecycle_event(inst.ident, etype, data))

    async def _resumed(self, inst: HttpInstance) -> None:
        inst.acked.clear()
        await self._publish(
            inst, lifecycle_event(inst.ident, EventType.RESUMED, {"checkpoint_seq": inst.ckpt_seq})
        )

    async def _publish(self, inst: HttpInstance, event: AuditEvent) -> None:
        try:
            await publish_event(self.conn.js, self.ns, event, timeout=2.0, chain=inst.chain)
        except MeshError as exc:
            raise Unavailable(
                f"cannot write the {event.type.value} event to the audit log: {exc} {HINT}"
            ) from None

    # -- control long-poll ----------------------------------------------------------------------
    async def control(self, ident: Identity, known_killed: bool | None, wait: float) -> dict[str, Any]:
        """The answer at once if it differs from ``known_killed`` (or none given), else when it does."""
        await self._synced()
        inst = self.instance(ident)
        answer = self.answer(inst)
        deadline = time.monotonic() + wait
        while known_killed is not None and answer["killed"] == known_killed:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            inst.waiters.add(waiter)
            try:
                with contextlib.suppress(TimeoutError):
                    await wait_for(waiter, left)
            finally:
                inst.waiters.discard(waiter)
            inst.last_seen = time.monotonic()
            answer = self.answer(inst)
        if not answer["killed"] and inst.acked:
            await self._resumed(inst)
        return answer

    def on_kill(self, held: InForce) -> None:
        try:
            target = key_to_target(held.key)
        except InvalidTarget:
            return self._wake_all()
        for inst in list(self._instances.values()):
            if inst.waiters and target.matches(inst.agent, inst.ident.instance):
                self._wake(inst)

    def on_clear(self, _key: str) -> None:
        self._wake_all()

    def _wake_all(self) -> None:
        for inst in list(self._instances.values()):
            if inst.waiters:
                self._wake(inst)

    @staticmethod
    def _wake(inst: HttpInstance) -> None:
        for waiter in list(inst.waiters):
            if not waiter.done():
                waiter.set_result(None)

    # -- checkpoints and acknowledgements -------------------------------------------------------
    def _ckpt_key(self, inst: HttpInstance) -> str:
        return self.ns.instance_key(inst.agent, inst.ident.instance)

    async def read_checkpoint(self, ident: Identity) -> tuple[Checkpoint | None, int | None]:
        inst = self.instance(ident)
        saved, revision = await checkpoints.read_checkpoint(self.conn, self._ckpt_key(inst))
        if inst.ckpt_seq is None:
            inst.ckpt_seq = saved.seq if saved is not None else 0
        return saved, revision

    async def write_checkpoint(self, ident: Identity, body: CheckpointIn) -> tuple[Checkpoint, int]:
        inst = self.instance(ident)
        if inst.ckpt_seq is None:  # go on from the stored seq (a gateway restart starts at None)
            await self.read_checkpoint(ident)
        seq = (inst.ckpt_seq or 0) + 1
        key = self._ckpt_key(inst)
        saved = await checkpoints.write_checkpoint(
            self.conn, key, ident.agent_uri, ident.instance, seq, body.state, body.usage
        )
        inst.ckpt_seq = max(seq, inst.ckpt_seq or 0)
        return saved

    async def halted(self, ident: Identity, body: HaltedIn) -> dict[str, Any]:
        """Acknowledge every record in force over the instance: checkpoint first, then one event each."""
        await self._synced()
        inst = self.instance(ident)
        held = self.held(inst)
        if held is None:
            raise Unavailable("the gateway cannot read the kill records right now (fail closed): retry")
        if not held:
            raise Conflict(
                f"no kill record is in force over {ident.agent_uri}#{ident.instance}: nothing to acknowledge"
            )
        status = body.status or ("paused" if (held[0].record.action or inst.on_kill) == "pause" else "killed")
        seq = inst.ckpt_seq
        if body.checkpoint is not None:
            ckpt, _rev = await self.write_checkpoint(ident, CheckpointIn(state=body.checkpoint))
            seq = ckpt.seq
        await self._announce(inst, held)
        done: list[str] = []
        for h in held:
            await self._publish(inst, halted_event(ident, h, status, body.metadata, body.checkpoint, seq))
            inst.acked[h.record.command_id] = status
            done.append(h.record.command_id)
        return {
            "agent_uri": ident.agent_uri,
            "instance": ident.instance,
            "acknowledged": done,
            "status": status,
            "checkpoint_seq": seq,
        }

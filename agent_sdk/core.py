"""The asyncio engine of one instance: control subscription, kill state, acks, heartbeats, lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

import nats.js.errors
import structlog
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from agent_sdk import events
from agent_sdk.ackpipe import pipelined_js
from agent_sdk.checkpoints import CheckpointStore
from agent_sdk.config import AgentConfig, OnKill
from agent_sdk.escalation import Escalation
from agent_sdk.guarded import GuardedCalls
from agent_sdk.killmachine import HaltPlan, KillMachine, Verdict
from agent_sdk.killstate import InForce
from agent_sdk.liveness import LoopLiveness, for_loop
from agent_sdk.quota import AgentQuota
from agent_sdk.router import ControlRouter, router_for
from agent_sdk.usage import UsageCounters
from mesh import tracing
from mesh.aio import raise_if_cancelling, wait_for
from mesh.audit import AuditChain, publish_event
from mesh.codec import encode
from mesh.connection import Connection
from mesh.control import (
    ControlUpdate,
    parse_control_message,
    read_records,
    read_records_batched,
    read_records_from_leader,
)
from mesh.errors import (
    AgentKilled,
    ConfigError,
    MalformedMessage,
    MeshError,
    MeshTimeout,
    NotProvisioned,
    PermissionDenied,
)
from mesh.logs import ensure_configured
from mesh.models import AuditEvent, EventType, Heartbeat, Status, utcnow
from mesh.provision import provision

__all__ = ["AgentCore"]

#: The longest any one step of closing an agent may take when the server stalls.
CLOSE_TIMEOUT = 5.0

log = structlog.get_logger("agent_sdk.core")

#: How long a safe point waits for the post-reconnect re-read before acting on what it knows.
SYNC_WAIT = 5.0
MALFORMED_LOG_EVERY = 10.0


class AgentCore:
    """Everything that talks to NATS for one instance. Runs on one event loop.

    Thread-safety: the ``attention``/``killed_evt``/``clear_evt`` flags are threading.Events so
    that a sync agent's thread can test them without touching the loop; everything else is
    mutated on the loop only (``sync_parked`` under ``_sync_lock``).
    """

    def __init__(self, cfg: AgentConfig, connection: Connection | None = None) -> None:
        self.cfg = cfg
        #: A connection shared with other agents of this process, owned by the caller: this
        #: instance subscribes on it and reports on it, but never closes it.
        self.shared = connection
        self._listener: object | None = None
        #: On a shared connection: its control router (one subscription per subject, batched reads).
        self.router: ControlRouter | None = router_for(connection) if connection is not None else None
        self.resync_interval = cfg.resync_interval
        self.heartbeat_interval = cfg.heartbeat_interval
        self._link_token: object | None = None
        self.ns = cfg.settings.namespace
        self.key = self.ns.instance_key(cfg.uri, cfg.instance)
        self.machine = KillMachine(
            self.ns.matching_control_keys(cfg.uri, cfg.instance),
            on_kill=cfg.on_kill,
            hard_kill=cfg.hard_kill,
            fail_closed_after=cfg.fail_closed_after,
        )
        self.usage = UsageCounters()
        self.quota = AgentQuota(self, cfg.quota_timeout)
        self.ckpt = CheckpointStore(str(cfg.uri), cfg.instance, self.key, self.usage)
        ensure_configured()  # bind() fixes the config now; unconfigured structlog writes to stdout
        self.log = log.bind(agent=str(cfg.uri), instance=cfg.instance)
        #: This instance's audit chain: its own, so that agents sharing a connection never queue
        #: behind each other's acks.
        self.audit_chain = AuditChain()
        #: Set when a safe point must take the slow path: killed, fail-closed, or re-syncing.
        self.attention = threading.Event()
        self.killed_evt = threading.Event()
        self.clear_evt = threading.Event()
        self.clear_evt.set()
        #: What sync sleepers wait on: set with ``attention``, except that when the loop is
        #: about to acknowledge for a parked sleeper it is set only after the ack, so the
        #: waking thread does not compete for the GIL with the ack on its way out.
        self.sleep_wake = threading.Event()
        self._defer_wake = False
        self.metadata: dict[str, Any] = dict(cfg.metadata)
        self.started_at = utcnow()
        self.conn: Connection | None = None
        #: Where events and checkpoints are published: on a shared connection, a context whose
        #: publishes are pipelined with those of the other agents (agent_sdk/ackpipe.py).
        self.js: JetStreamContext | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.control_kv: KeyValue | None = None
        #: Proof that our event loop runs (agent_sdk.liveness); a placeholder until start().
        self.liveness = LoopLiveness()
        self.closed = False
        self.parked = 0
        self.sync_parked = 0
        self._sync_lock = threading.Lock()
        self.paused_waiters = 0
        self.guarded = GuardedCalls()
        self.escalation = Escalation(self)
        self.malformed = 0
        self._malformed_logged = 0.0
        self._malformed_resync = 0.0
        self._hb_seq = 0
        self._changed = asyncio.Event()
        self._halt_lock = asyncio.Lock()
        self._resync_lock = asyncio.Lock()
        self._subs: list[Subscription] = []
        self._tasks: list[asyncio.Task[Any]] = []
        self._bg: set[asyncio.Task[Any]] = set()
        self._last_contact = time.monotonic()

    # -- state queries (any thread) -------------------------------------------------------------
    @property
    def killed(self) -> bool:
        return self.killed_evt.is_set()

    @property
    def status(self) -> Status:
        return self.machine.status

    @status.setter
    def status(self, value: Status) -> None:
        self.machine.status = value

    def in_force(self) -> list[InForce]:
        return self.machine.in_force()

    def mode(self) -> OnKill:
        return self.machine.mode()

    def killed_error(self) -> AgentKilled:
        return self.machine.killed_error()

    # -- start ------------------------------------------------------------------------------------
    async def start(self, *, own_loop: bool = False) -> Any:
        """Connect, subscribe, read kill records and checkpoint, then report ``started``.

        ``own_loop=False`` (AsyncAgent): the loop is the user's and may be blocked by their
        code, so a watchdog thread also checks for kills out of band when the loop stalls.
        """
        self.loop = asyncio.get_running_loop()
        if self.shared is not None:
            conn = self.shared
            if not conn.is_connected:
                raise ConfigError("the shared connection is not connected: open it before starting agents")
            self._listener = conn.add_listener(self._on_disconnect, self._on_reconnect)
        else:
            conn = Connection(
                self.cfg.settings,
                name=f"agent-sdk {self.cfg.uri} {self.cfg.instance}",
                on_disconnect=self._on_disconnect,
                on_reconnect=self._on_reconnect,
            )
            await conn.connect()
        self.conn = conn
        self.js = pipelined_js(conn) if self.shared is not None else conn.js
        self._link_token = conn.on_link_up(self._gate_now)
        try:
            self.control_kv, ckpt_kv = await self._buckets()
            # Subscribe first, then read: a kill written in between arrives by one path or both.
            subjects = self.ns.instance_control_subjects(self.cfg.uri, self.cfg.instance)
            if self.router is not None:
                await self.router.attach(self, subjects, self.control_kv)
            else:
                for subject in subjects:
                    self._subs.append(await conn.nc.subscribe(subject, cb=self._on_control))
                await conn.nc.flush()
            await self._read_records()
            restored = await self.ckpt.load(ckpt_kv, conn.js, self.ns.checkpoints_bucket, scoped=conn.scoped)
            self._last_contact = time.monotonic()
            await self._emit(
                events.lifecycle_event(
                    self.cfg,
                    EventType.STARTED,
                    data={
                        "kill_keys": [r.key for r in self.in_force()],
                        "checkpoint_seq": self.ckpt.written_seq or None,
                        "hard_kill": self.cfg.hard_kill,
                        "on_kill": self.cfg.on_kill,
                    },
                )
            )
        except BaseException:
            await self._release(conn)
            raise
        self.liveness = for_loop(asyncio.get_running_loop())
        self.liveness.add(self)
        await self.send_heartbeat()
        self._tasks = [asyncio.create_task(self.ckpt.run_writer(), name="agent-sdk checkpoints")]
        if self.router is None:  # on a shared connection the router beats and re-reads for all
            self._tasks.append(asyncio.create_task(self._heartbeat_loop(), name="agent-sdk heartbeat"))
            self._tasks.append(asyncio.create_task(self._resync_loop(), name="agent-sdk resync"))
        else:
            self.router.beat_for(self)
        if self.cfg.fail_closed_after is not None:
            self._tasks.append(asyncio.create_task(self._fail_closed_loop(), name="agent-sdk fail-closed"))
        if self.cfg.hard_kill and not own_loop:
            self.escalation.watch()
        self.log.debug("agent started", killed=self.killed, restored=restored is not None)
        return restored

    async def _buckets(self) -> tuple[KeyValue, KeyValue]:
        assert self.conn is not None
        js = self.conn.js
        try:
            return await self._open_buckets()
        except (nats.js.errors.BucketNotFoundError, nats.js.errors.NotFoundError):
            pass
        try:
            await provision(js, self.ns)
        except PermissionDenied:
            self.log.info("may not provision; expecting an operator to have done it")
        try:
            return await self._open_buckets()
        except (nats.js.errors.BucketNotFoundError, nats.js.errors.NotFoundError) as exc:
            raise NotProvisioned(f"bucket {self.ns.control_bucket}") from exc

    async def _open_buckets(self) -> tuple[KeyValue, KeyValue]:
        assert self.conn is not None and self.js is not None
        js = self.conn.js
        # The checkpoint bucket through self.js: its puts are pipelined with the halted events.
        return await js.key_value(self.ns.control_bucket), await self.js.key_value(self.ns.checkpoints_bucket)

    # -- control path -------------------------------------------------------------------------------
    async def _on_control(self, msg: Msg) -> None:
        try:
            update = parse_control_message(self.ns, msg)
        except MalformedMessage as exc:
            self._note_malformed(msg.subject, str(exc))
            return
        except Exception as exc:  # a callback that raises would be logged by nats-py and forgotten
            self._note_malformed(msg.subject, f"{type(exc).__name__}: {exc}")
            return
        self.on_update(update)

    def on_malformed(self, subject: str, error: str) -> None:
        """The router got a control message it could not decode on one of our subjects."""
        self._note_malformed(subject, error)

    def on_update(self, update: ControlUpdate) -> None:
        """A pushed control update for one of our keys (decoded once, by us or the router)."""
        if self.closed:
            return
        if update.record is None:
            # A resume lifts a kill, so it is confirmed against the KV before it counts: a forged
            # or replayed "cleared" push must never let an instance act.
            if update.key in self.machine.keys:
                self.spawn(self._confirm_clear(update.key))
            return
        self._apply([update])

    async def _confirm_clear(self, key: str) -> None:
        assert self.control_kv is not None
        try:
            if self.router is not None:
                updates = await self.router.read(self.control_kv, [key])
            else:
                updates = await read_records(self.control_kv, [key])
        except MeshError as exc:
            self.log.warning(
                "confirming a resume failed; staying halted until the next re-read", error=str(exc)
            )
            return
        self._apply(updates, from_kv=True)
        with contextlib.suppress(MeshError):  # the periodic re-read asks again
            await self._ask_the_leader()

    def _note_malformed(self, subject: str, error: str) -> None:
        self.malformed += 1
        now = time.monotonic()
        if now - self._malformed_logged >= MALFORMED_LOG_EVERY:
            self._malformed_logged = now
            self.log.warning(
                "ignored malformed control message", subject=subject, error=error, count=self.malformed
            )
        # The KV is the truth: a corrupt push may hide a real kill, so read the records again
        # (at most once a second, so a flood of garbage cannot turn into a flood of reads).
        if now - self._malformed_resync >= 1.0:
            self._malformed_resync = now
            self.spawn(self.resync())

    async def _read_records(self) -> None:
        assert self.control_kv is not None
        kv = self.control_kv
        assert self.conn is not None
        # One direct multi-get for every matching key: one round trip, not one per key; on a
        # shared connection, one for every agent of the connection reading in this loop turn.
        if self.router is not None:
            updates = await self.router.read(kv, self.machine.keys)
        else:
            updates = await read_records_batched(self.conn, kv, sorted(self.machine.keys))
        self._apply(updates, from_kv=True)
        await self._ask_the_leader()

    async def _ask_the_leader(self, disputed: list[str] | None = None) -> None:
        """A read contradicted a pushed kill with a clear: only the stream's leader may confirm it."""
        if disputed is None:
            disputed = self.machine.take_disputed()
        if disputed:
            assert self.conn is not None
            self._apply(await read_records_from_leader(self.conn, disputed), from_kv=True, leader=True)

    async def resync(self) -> bool:
        """Re-read every matching key; True if the read succeeded (the watch-health check)."""
        if self.conn is None or not self.conn.is_connected or self.closed:
            return False
        async with self._resync_lock:
            try:
                await self._read_records()
            except MeshError as exc:
                self.log.warning("re-reading kill records failed", error=str(exc))
                return False
        self._last_contact = time.monotonic()
        return True

    def periodic_read(self, updates: dict[str, ControlUpdate]) -> None:
        """The router's periodic re-read, our share of it (what :meth:`resync` would have read)."""
        if self.closed or self._resync_lock.locked():
            return  # a re-read of our own is under way and will apply its own result
        self._apply([updates[k] for k in sorted(updates)], from_kv=True)
        disputed = self.machine.take_disputed()
        if disputed:
            self.spawn(self._ask_the_leader(disputed))
        self._last_contact = time.monotonic()

    def periodic_read_failed(self, error: str) -> None:
        self.log.warning("re-reading kill records failed", error=error)

    def _apply(self, updates: list[ControlUpdate], *, from_kv: bool = False, leader: bool = False) -> None:
        new = self.machine.apply(updates, from_kv=from_kv, leader=leader)
        if new is None:
            return
        for held in new:
            self.log.info(
                "kill observed", key=held.key, revision=held.revision, command_id=held.record.command_id
            )
        self._refresh()

    def _refresh(self) -> None:
        """Ask the machine what a change calls for, and carry it out."""
        machine = self.machine
        if machine.killed:
            self.killed_evt.set()
            self.clear_evt.clear()
        else:
            self.clear_evt.set()
            self.killed_evt.clear()
        effects = machine.refresh(
            parked=bool(self.parked or self.guarded),
            sync_parked=bool(self.sync_parked),
            pausing=bool(self.paused_waiters),
            closed=self.closed,
        )
        self._defer_wake = effects.defer_wake
        self._update_attention()
        for held in effects.escalate:
            self.escalation.schedule(held)
        self._changed.set()
        self._changed = asyncio.Event()
        if effects.cancel_guarded:
            self.guarded.cancel_all()
        if effects.halt:
            self.spawn(self._halt_then_wake())  # parked at a safe point: acknowledge at once
        elif effects.resume:
            self.spawn(self.publish_resumed())  # it sends the heartbeat
        elif effects.heartbeat:
            self.spawn(self.send_heartbeat())

    async def _halt_then_wake(self) -> None:
        try:
            await self.halt()
        finally:
            self._defer_wake = False
            self._update_attention()

    def _update_attention(self) -> None:
        if self.machine.needs_attention:
            self.attention.set()
            if not self._defer_wake:
                self.sleep_wake.set()
        else:
            self.attention.clear()
            self.sleep_wake.clear()

    async def wait_change(self, timeout: float | None = None) -> None:
        event = self._changed
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await event.wait()

    # -- safe points ----------------------------------------------------------------------------------
    async def safe_point(self) -> None:
        """The slow path of every safe point: wait for a re-sync, then halt if killed."""
        raise_if_cancelling()
        if self.stalled() and not self.closed and self.conn is not None:
            await self._gate_and_resync("a safe point after a freeze")
        if self.machine.verdict() is Verdict.WAIT:
            deadline = time.monotonic() + SYNC_WAIT
            while self.machine.verdict() is Verdict.WAIT and time.monotonic() < deadline:
                await self.wait_change(deadline - time.monotonic())
        if not self.killed:
            return
        await self.halt()
        if self.mode() == "raise":
            raise self.killed_error()
        await self._pause_until_clear()

    async def halt(self) -> None:
        """Flush the checkpoint, then acknowledge every record in force not yet acknowledged."""
        async with self._halt_lock:
            plan = self.machine.plan_halt()
            if plan is None:
                return
            unwinding = self.guarded.unwinding()
            if unwinding:  # let cancelled guarded calls unwind before we say we have stopped
                grace = min((r.record.grace for r in self.in_force()), default=1.0)
                await self.guarded.wait_unwound(unwinding, grace)
            self.machine.halting(plan)
            if not plan.new:
                await self.ckpt.flush()
            else:
                await self._acknowledge(plan)
            await self.send_heartbeat()

    async def _acknowledge(self, plan: HaltPlan) -> None:
        metadata = dict(self.metadata)
        # The checkpoint first, then the acks carrying what is stored: were they pipelined, a put
        # refused during an election (a 503) could leave an ack promising more than a restart restores.
        await self.ckpt.flush()
        seq, checkpoint = self.ckpt.stored()
        status = plan.status.value
        # Traced kills only (agent-mesh[otel]): one span per record, under the kill's.
        spans = [self._halt_span(r, status) if r.record.trace else None for r in plan.new]
        acks = [
            events.ack_event(
                self.cfg,
                EventType.HALTED,
                r,
                status=status,
                metadata=metadata,
                checkpoint=checkpoint,
                checkpoint_seq=seq,
                trace=tracing.carrier(span),
            )
            for r, span in zip(plan.new, spans, strict=True)
        ]
        results = await self._send_acks(acks)
        for r, result, span in zip(plan.new, results, spans, strict=True):
            tracing.end(span, **{"mesh.acked": not isinstance(result, BaseException)})
            if isinstance(result, BaseException):
                self.log.warning("halt ack failed; will retry", command_id=r.record.command_id)
            else:
                self.machine.acknowledged(r.record.command_id)
                self.log.info(
                    "halt acknowledged",
                    status=status,
                    command_id=r.record.command_id,
                    revision=r.revision,
                    key=r.key,
                )

    def _halt_span(self, held: InForce, status: str) -> Any:
        return tracing.start(
            "mesh.instance.halt",
            held.record.trace,
            {
                "mesh.agent_uri": str(self.cfg.uri),
                "mesh.instance": self.cfg.instance,
                "mesh.command_id": held.record.command_id,
                "mesh.status": status,
            },
        )

    async def _send_acks(self, acks: list[AuditEvent]) -> list[BaseException | None]:
        """Publish the acks (JetStream, acknowledged); per ack, None or the exception it raised."""
        if len(acks) == 1:
            try:
                await self._emit(acks[0])
            except Exception as exc:
                return [exc]
            return [None]
        results = await asyncio.gather(*(self._emit(a) for a in acks), return_exceptions=True)
        return [r if isinstance(r, BaseException) else None for r in results]

    async def _pause_until_clear(self) -> None:
        self.paused_waiters += 1
        try:
            while self.killed:
                if self.closed:  # stop() from another thread: do not hold the caller forever
                    raise self.killed_error()
                await self.wait_change()
                if self.killed:
                    await self.halt()
                    if self.mode() == "raise":
                        raise self.killed_error()
        finally:
            self.paused_waiters -= 1
        await self.publish_resumed()

    async def publish_resumed(self) -> None:
        if not self.machine.resume():
            return
        self.log.info("resumed")
        try:
            # The acknowledgement first; the status heartbeat must not delay it.
            await self._emit(
                events.lifecycle_event(
                    self.cfg, EventType.RESUMED, data={"checkpoint_seq": self.ckpt.written_seq or None}
                )
            )
        except MeshError as exc:
            self.log.warning("could not record resume", error=str(exc))
        finally:
            await self.send_heartbeat()

    async def sleep(self, seconds: float) -> None:
        """Sleep, waking at once on a kill (parked: acknowledged by the push itself)."""
        raise_if_cancelling()
        if not self.attention.is_set():
            loop = asyncio.get_running_loop()
            deadline = loop.time() + seconds
            self.parked += 1
            try:
                while not self.attention.is_set():
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    await self.wait_change(remaining)
            finally:
                self.parked -= 1
        if self.attention.is_set() or self.stalled():
            await self.safe_point()

    async def run_guarded(
        self, fn: Callable[..., Coroutine[Any, Any, Any]], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """Run a guarded coroutine; a kill cancels it at once and the caller gets AgentKilled."""
        raise_if_cancelling()
        if self.attention.is_set() or self.stalled():
            await self.safe_point()
        return await self.guarded.run(fn, args, kwargs, self.killed_error)

    # -- heartbeats and background loops ------------------------------------------------------------
    def heartbeat_message(self, status: Status | None = None) -> Heartbeat:
        self._hb_seq += 1
        return events.heartbeat(
            self.cfg,
            status=status or self.status,
            seq=self._hb_seq,
            started_at=self.started_at,
            metadata=dict(self.metadata),
            kill_keys=[r.key for r in self.in_force()],
            usage=self.usage.snapshot()[1],
        )

    async def send_heartbeat(self) -> None:
        conn = self.conn
        if conn is None or not conn.is_connected:
            return
        hb = self.heartbeat_message()
        try:
            await conn.nc.publish(self.ns.heartbeat_subject(self.cfg.uri, self.cfg.instance), encode(hb))
        except Exception as exc:  # heartbeats are best effort; the next one follows
            raise_if_cancelling()
            self.log.debug("heartbeat not sent", error=str(exc) or type(exc).__name__)

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.heartbeat_interval)
            await self.beat()

    async def beat(self) -> None:
        """One heartbeat interval's work (from our own timer, or a shared connection's)."""
        self.escalation.tick = time.monotonic()  # proof for the watchdog that our loop runs
        await self.send_heartbeat()
        # Usage totals are stored at most once per interval, so a restart loses at most that.
        if self.ckpt.usage_dirty:
            self.ckpt.wake()

    def stalled(self) -> bool:
        """Whether the loop has not proved it runs for STALL_LIMIT: its flags may be out of date."""
        return self.liveness.stalled()

    def on_freeze(self) -> None:
        """Called by the loop's liveness ticker after a freeze: gate safe points, re-read records."""
        if self.closed or self.machine.syncing or self.conn is None:
            return
        self.log.info("agent was frozen or its loop blocked; re-reading kill records")
        self.machine.sync_started()
        self._update_attention()
        self.spawn(self._after_reconnect("a freeze"))

    async def _resync_loop(self) -> None:
        # A missed republish (or a dead subscription) must not leave us unkillable.
        # Jittered (±20 %), so that a fleet started together does not re-read in lockstep.
        while True:
            await asyncio.sleep(self.cfg.resync_interval * random.uniform(0.8, 1.2))
            await self.resync()

    async def _fail_closed_loop(self) -> None:
        limit = self.cfg.fail_closed_after
        assert limit is not None
        while True:
            await asyncio.sleep(min(0.5, limit / 4))
            conn = self.conn
            if conn is not None and conn.is_connected and not self.machine.syncing:
                self._last_contact = time.monotonic()
            elif time.monotonic() - self._last_contact > limit and self.machine.link_lost_too_long():
                self.log.warning("no contact with NATS; halting (fail_closed_after)", seconds=limit)
                self._refresh()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._bg.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._bg.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.log.warning("background step failed", error=repr(task.exception()))

    async def _emit(self, event: AuditEvent, timeout: float = 5.0) -> None:
        assert self.js is not None
        await publish_event(self.js, self.ns, event, timeout=timeout, chain=self.audit_chain)

    # -- connection events -------------------------------------------------------------------------
    async def _on_disconnect(self) -> None:
        self.log.warning("disconnected from NATS")

    def _gate_now(self) -> None:
        """The connection is back (nats-py has not told its callbacks yet): gate safe points now.

        Until the records are re-read, a kill written during the outage must win over any
        guarded action (rule 3); the re-read itself starts in ``_on_reconnect``.
        """
        if not self.closed:
            self.machine.sync_started()
            self._update_attention()

    async def _on_reconnect(self) -> None:
        # Gate safe points until the records are re-read: a kill written while we were away
        # must be honoured before the first guarded action (rule 3). Never block nats-py here.
        self.machine.sync_started()
        self._update_attention()
        self.spawn(self._after_reconnect())

    async def _gate_and_resync(self, why: str) -> None:
        """Hold every safe point until the kill records are re-read from the KV."""
        if self.machine.syncing:
            while self.machine.syncing and not self.closed:
                await self.wait_change(SYNC_WAIT)
            return
        self.machine.sync_started()
        self._update_attention()
        await self._after_reconnect(why)

    async def _after_reconnect(self, why: str = "reconnect") -> None:
        try:
            while not self.closed:
                assert self.conn is not None
                with contextlib.suppress(Exception):
                    await self.conn.nc.flush(timeout=2)
                raise_if_cancelling()
                if await self.resync():
                    break
                await asyncio.sleep(0.2)
        finally:
            self.machine.sync_done()
            self.log.info("re-synced kill records", after=why, killed=bool(self.in_force()))
            self._refresh()
        if self.ckpt.dirty:
            self.ckpt.wake()

    # -- stop ----------------------------------------------------------------------------------------
    async def close(self, outcome: Status, exc: BaseException | None = None) -> None:
        """Flush, report ``stopped``/``crashed`` (killed: ``stopped`` with that status), drain."""
        if self.closed:
            return
        self.closed = True
        self.liveness.discard(self)
        self._changed.set()  # wake paused safe points so they can leave
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            # Bounded: leaving the agent must not hang on a task stuck in a stalled server call.
            await asyncio.wait(self._tasks, timeout=CLOSE_TIMEOUT)
        conn = self.conn
        if conn is None:
            return
        try:
            try:
                await wait_for(self.ckpt.flush(), CLOSE_TIMEOUT)
            except TimeoutError as err:
                raise MeshTimeout("flush the last checkpoint", CLOSE_TIMEOUT) from err
            data: dict[str, Any] = {"status": outcome.value, "checkpoint_seq": self.ckpt.written_seq or None}
            etype = EventType.STOPPED
            if outcome is Status.CRASHED and exc is not None:
                etype = EventType.CRASHED
                data["exception"] = type(exc).__name__
                data["message"] = str(exc)[:1000]
            self.status = outcome
            if conn.is_connected:
                await self.quota.close()  # unspent leases go back to their budgets
                await self.send_heartbeat()
                await self._emit(events.lifecycle_event(self.cfg, etype, data=data), timeout=2.0)
        except MeshError as err:
            self.log.warning("could not report stop", error=str(err))
        finally:
            for task in list(self._bg):
                task.cancel()
            await self._release(conn)
        self.log.debug("agent closed", status=outcome.value)

    async def _release(self, conn: Connection) -> None:
        """Drain our own connection; on a shared one, only drop our subscriptions and flush."""
        if self.shared is None:
            await conn.close(timeout=CLOSE_TIMEOUT)
            return
        conn.remove_listener(self._link_token)
        if self._listener is not None:
            conn.remove_listener(self._listener)
            self._listener = None
        if self.router is not None:
            await self.router.detach(self)
        subs, self._subs = self._subs, []
        for sub in subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        if conn.is_connected:
            with contextlib.suppress(Exception):
                await conn.nc.flush(timeout=int(CLOSE_TIMEOUT))

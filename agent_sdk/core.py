"""The I/O driver of one instance's kill machine: carries out its effects, and holds the safe points."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import structlog

from agent_sdk import startstop
from agent_sdk.checkpoints import CheckpointStore
from agent_sdk.config import AgentConfig, OnKill
from agent_sdk.controlfeed import ControlFeed
from agent_sdk.escalation import Escalation
from agent_sdk.guarded import GuardedCalls
from agent_sdk.halting import Halting
from agent_sdk.killmachine import KillMachine, Verdict
from agent_sdk.killstate import InForce
from agent_sdk.liveness import LoopLiveness
from agent_sdk.quota import AgentQuota
from agent_sdk.resyncgate import SYNC_WAIT, ResyncGate
from agent_sdk.router import ControlRouter, router_for
from agent_sdk.timers import Timers
from agent_sdk.usage import UsageCounters
from mesh.errors import AgentKilled
from mesh.protocol.controlupdate import ControlUpdate
from mesh.protocol.models import AuditEvent, Heartbeat, Status, utcnow
from mesh.runtime.aio import raise_if_cancelling
from mesh.runtime.logs import ensure_configured
from mesh.transport.audit import AuditChain, publish_event
from mesh.transport.connection import Connection
from mesh.transport.natstypes import JetStreamContext, KeyValue

__all__ = ["AgentCore"]

log = structlog.get_logger("agent_sdk.core")


class AgentCore:
    """Everything that talks to NATS for one instance. Runs on one event loop.

    The jobs are split: ``startstop`` (connect, first read; report and drain), ``feed`` (pushed
    records and re-reads), ``gate`` (re-syncs after a gap), ``halting`` (checkpoint and acks),
    ``timers`` (heartbeats and background loops); this class feeds the kill machine and carries
    out what it returns.

    Thread-safety: the ``attention``/``killed_evt``/``clear_evt``/``sleep_wake`` flags are
    threading.Events so that a sync agent's thread can test them without touching the loop;
    everything else is mutated on the loop only (the sync sleepers' count under a lock).
    """

    def __init__(self, cfg: AgentConfig, connection: Connection | None = None) -> None:
        self.cfg = cfg
        #: A connection shared with other agents of this process, owned by the caller: this
        #: instance subscribes on it and reports on it, but never closes it.
        self.shared = connection
        self.listener: object | None = None
        self.link_token: object | None = None
        #: On a shared connection: its control router (one subscription per subject, batched reads).
        self.router: ControlRouter | None = router_for(connection) if connection is not None else None
        self.resync_interval = cfg.resync_interval
        self.heartbeat_interval = cfg.heartbeat_interval
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
        #: publishes are pipelined with those of the other agents (mesh/transport/ackpipe.py).
        self.js: JetStreamContext | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.control_kv: KeyValue | None = None
        #: Proof that our event loop runs (agent_sdk.liveness); a placeholder until start().
        self.liveness = LoopLiveness()
        self.closed = False
        self.parked = 0
        self._sync_parked = 0
        self._sync_lock = threading.Lock()
        self.last_contact = time.monotonic()
        self.guarded = GuardedCalls()
        self.escalation = Escalation(self)
        self.feed = ControlFeed(self)
        self.gate = ResyncGate(self)
        self.halting = Halting(self)
        self.timers = Timers(self)
        self._changed = asyncio.Event()
        self._bg: set[asyncio.Task[Any]] = set()

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

    @property
    def malformed(self) -> int:
        """Control messages ignored as undecodable."""
        return self.feed.malformed

    def in_force(self) -> list[InForce]:
        return self.machine.in_force()

    def mode(self) -> OnKill:
        return self.machine.mode()

    def killed_error(self) -> AgentKilled:
        return self.machine.killed_error()

    def stalled(self) -> bool:
        """Whether the loop has not proved it runs for STALL_LIMIT: its flags may be out of date."""
        return self.liveness.stalled()

    # -- lifecycle (agent_sdk/startstop.py) ---------------------------------------------------------
    async def start(self, *, own_loop: bool = False) -> Any:
        return await startstop.start(self, own_loop=own_loop)

    async def close(self, outcome: Status, exc: BaseException | None = None) -> None:
        await startstop.stop(self, outcome, exc)

    # -- what the router, the liveness ticker and the agents call ----------------------------------
    def on_update(self, update: ControlUpdate) -> None:
        self.feed.on_update(update)

    def on_malformed(self, subject: str, error: str) -> None:
        """The router got a control message it could not decode on one of our subjects."""
        self.feed.note_malformed(subject, error)

    def periodic_read(self, updates: dict[str, ControlUpdate]) -> None:
        self.feed.periodic_read(updates)

    def periodic_read_failed(self, error: str) -> None:
        self.log.warning("re-reading kill records failed", error=error)

    async def resync(self) -> bool:
        return await self.feed.resync()

    async def beat(self) -> None:
        await self.timers.beat()

    def on_freeze(self) -> None:
        self.gate.on_freeze()

    def heartbeat_message(self, status: Status | None = None) -> Heartbeat:
        return self.timers.heartbeat_message(status)

    async def halt(self) -> None:
        await self.halting.halt()

    # -- carrying out the machine's effects ---------------------------------------------------------
    def refresh(self) -> None:
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
            sync_parked=bool(self._sync_parked),
            pausing=bool(self.halting.paused_waiters),
            closed=self.closed,
        )
        self._defer_wake = effects.defer_wake
        self.update_attention()
        for held in effects.escalate:
            self.escalation.schedule(held)
        self.wake_all()
        if effects.cancel_guarded:
            self.guarded.cancel_all()
        if effects.halt:
            self.spawn(self._halt_then_wake())  # parked at a safe point: acknowledge at once
        elif effects.resume:
            self.spawn(self.halting.publish_resumed())  # it sends the heartbeat
        elif effects.heartbeat:
            self.spawn(self.timers.send_heartbeat())

    async def _halt_then_wake(self) -> None:
        try:
            await self.halting.halt()
        finally:
            self._defer_wake = False
            self.update_attention()

    def update_attention(self) -> None:
        if self.machine.needs_attention:
            self.attention.set()
            if not self._defer_wake:
                self.sleep_wake.set()
        else:
            self.attention.clear()
            self.sleep_wake.clear()

    def wake_all(self, *, for_good: bool = False) -> None:
        """Wake everything waiting in :meth:`wait_change` (``for_good``: closing, later waits too)."""
        self._changed.set()
        if not for_good:
            self._changed = asyncio.Event()

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
            await self.gate.gate_and_resync("a safe point after a freeze")
        if self.machine.verdict() is Verdict.WAIT:
            deadline = time.monotonic() + SYNC_WAIT
            while self.machine.verdict() is Verdict.WAIT and time.monotonic() < deadline:
                await self.wait_change(deadline - time.monotonic())
        if not self.killed:
            return
        await self.halting.halt()
        if self.mode() == "raise":
            raise self.killed_error()
        await self.halting.pause_until_clear()

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

    @contextlib.contextmanager
    def sync_parked(self) -> Iterator[None]:
        """A sync agent's thread sleeping on ``sleep_wake``: counted, so the loop acknowledges for it."""
        with self._sync_lock:
            self._sync_parked += 1
        try:
            yield
        finally:
            with self._sync_lock:
                self._sync_parked -= 1

    async def run_guarded(
        self, fn: Callable[..., Coroutine[Any, Any, Any]], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """Run a guarded coroutine; a kill cancels it at once and the caller gets AgentKilled."""
        raise_if_cancelling()
        if self.attention.is_set() or self.stalled():
            await self.safe_point()
        return await self.guarded.run(fn, args, kwargs, self.killed_error)

    # -- tasks and events -----------------------------------------------------------------------------
    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._bg.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._bg.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.log.warning("background step failed", error=repr(task.exception()))

    def cancel_background(self) -> None:
        for task in list(self._bg):
            task.cancel()

    async def emit(self, event: AuditEvent, timeout: float = 5.0) -> None:
        assert self.js is not None
        await publish_event(self.js, self.ns, event, timeout=timeout, chain=self.audit_chain)

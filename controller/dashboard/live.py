"""The live feed: a KV watch of the instances bucket and a tail of the audit stream, fanned out to
every browser as server-sent events.

One watch and one audit consumer serve all browsers; each browser is an asyncio queue, never a
thread. Both loops resynchronise after a reconnect or any error, and are health-checked: nats-py
does not recreate an ordered consumer (which a KV watch is) once the server has dropped it
(nats.py #510), so a watch that looks quiet may in fact be dead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from mesh.errors import MalformedMessage
from mesh.protocol.codec import decode
from mesh.protocol.kvwire import is_delete_operation
from mesh.protocol.models import AuditEvent, InstanceStatus
from mesh.runtime.aio import raise_if_cancelling, wait_for
from mesh.transport.connection import Connection
from mesh.transport.kvops import NO_NEWS, fetch, next_update
from mesh.transport.natstypes import AckPolicy, ConsumerConfig, DeliverPolicy, KeyValue

__all__ = ["FleetFeed", "Subscriber", "sse"]

log = structlog.get_logger("controller.dashboard.live")

#: How long a quiet loop waits for news before it checks the restart flag.
POLL = 1.0
#: Events a slow browser may fall behind by before it is dropped (it reconnects and resyncs).
SUBSCRIBER_QUEUE = 2000


def sse(event: str, data: Any) -> str:
    """One server-sent event (JSON data on a single line)."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'), default=str)}\n\n"


class Subscriber:
    """One browser's queue of ready-to-send SSE frames; ``None`` means the stream is over."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=SUBSCRIBER_QUEUE)
        self.closed = False

    def send(self, frame: str) -> None:
        if self.closed:
            return
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:
            log.warning("dashboard client too slow, dropping it (it will reconnect)")
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        while True:
            try:
                self.queue.put_nowait(None)
                return
            except asyncio.QueueFull:
                with contextlib.suppress(asyncio.QueueEmpty):
                    self.queue.get_nowait()

    async def next(self, timeout: float) -> str | None:
        """The next frame, ``""`` after ``timeout`` seconds of silence, ``None`` at the end."""
        try:
            return await wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return ""


class _Backoff:
    def __init__(self, base: float = 0.2, cap: float = 5.0) -> None:
        self.base, self.cap, self.tries = base, cap, 0

    def next(self) -> float:
        self.tries += 1
        return random.uniform(0.5, 1.0) * min(self.cap, self.base * float(2 ** min(self.tries, 8)))

    def reset(self) -> None:
        self.tries = 0


class _Restart(Exception):
    """Raised inside a loop to start it over (after a reconnect, or when it failed its health check)."""


def _instance_json(key: str, status: InstanceStatus) -> dict[str, Any]:
    data = status.model_dump(mode="json")
    data["key"] = key
    return data


class FleetFeed:
    """The fleet's current state and the latest audit events, kept live and pushed to subscribers."""

    def __init__(self, conn: Connection, *, audit_backlog: int = 200, health_interval: float = 5.0) -> None:
        self.conn = conn
        self.audit_backlog = audit_backlog
        self.health_interval = health_interval
        self.instances: dict[str, dict[str, Any]] = {}
        self.audit: deque[dict[str, Any]] = deque(maxlen=audit_backlog)
        self.instances_ready = asyncio.Event()
        self.audit_ready = asyncio.Event()
        self.restarts = Counter[str]()
        self._audit_seq = 0
        self._subscribers: set[Subscriber] = set()
        self._resync = {"instances": asyncio.Event(), "audit": asyncio.Event()}
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._forever("instances", self._watch_instances), name="dash-instances"),
            asyncio.create_task(self._forever("audit", self._tail_audit), name="dashboard-audit"),
        ]

    def close_streams(self) -> None:
        """End every browser stream (first step of a clean shutdown)."""
        self._stopping.set()
        for sub in list(self._subscribers):
            sub.close()
        self._subscribers.clear()

    async def stop(self) -> None:
        self.close_streams()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []

    def resync(self) -> None:
        """Start both loops over (on reconnect: the server may have lost their consumers)."""
        for event in self._resync.values():
            event.set()

    async def on_disconnect(self) -> None:
        self._broadcast(sse("nats", {"connected": False}))

    async def on_reconnect(self) -> None:
        self._broadcast(sse("nats", {"connected": True}))
        self.resync()

    # -- subscribers ----------------------------------------------------------------------------
    def subscribe(self) -> Subscriber:
        sub = Subscriber()
        if self._stopping.is_set():
            sub.close()
        else:
            self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subscribers.discard(sub)
        sub.closed = True

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def _broadcast(self, frame: str) -> None:
        for sub in list(self._subscribers):
            sub.send(frame)
            if sub.closed:
                self._subscribers.discard(sub)

    def snapshot(self) -> dict[str, Any]:
        instances = sorted(self.instances.values(), key=lambda i: (i["agent_uri"], i["instance"]))
        return {
            "instances": instances,
            "counts": dict(Counter(i["status"] for i in instances)),
            "audit": list(self.audit),
            "nats": {"connected": self.conn.is_connected},
            "ready": self.instances_ready.is_set() and self.audit_ready.is_set(),
        }

    def health(self) -> dict[str, Any]:
        return {
            "nats": self.conn.is_connected,
            "instances_watch": self.instances_ready.is_set(),
            "audit_tail": self.audit_ready.is_set(),
            "restarts": dict(self.restarts),
            "clients": self.subscriber_count,
        }

    # -- loops ----------------------------------------------------------------------------------
    async def _forever(self, name: str, loop: Callable[[asyncio.Event], Awaitable[None]]) -> None:
        """Run ``loop`` until shutdown, starting it over after any failure, with jittered backoff."""
        backoff = _Backoff()
        resync = self._resync[name]
        while not self._stopping.is_set():
            resync.clear()
            started = time.monotonic()
            try:
                await loop(resync)
            except asyncio.CancelledError:
                raise
            except _Restart as why:
                log.info("dashboard feed restarting", loop=name, reason=str(why))
            except Exception as exc:  # ConnectionClosedError, timeouts, a vanished consumer ...
                raise_if_cancelling()
                log.warning("dashboard feed failed, restarting", loop=name, error=repr(exc))
            self.restarts[name] += 1
            if time.monotonic() - started > 30:
                backoff.reset()
            if self._stopping.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await wait_for(self._stopping.wait(), backoff.next())

    async def _healthy(self, sub: Any, last: list[int]) -> None:
        """Raise :class:`_Restart` when the consumer behind ``sub`` is gone or stuck."""
        try:
            info = await wait_for(sub.consumer_info(), 3.0)
        except Exception as exc:
            raise _Restart(f"consumer check failed: {exc or type(exc).__name__}") from exc
        delivered = int(info.delivered.stream_seq or 0)
        stuck = bool(info.num_pending) and last and last[0] == delivered
        last[:] = [delivered]
        if stuck:
            raise _Restart(f"consumer stuck at stream sequence {delivered} with {info.num_pending} pending")

    async def _watch_instances(self, resync: asyncio.Event) -> None:
        """KV watch of the instances bucket: initial values, the ``None`` marker, then updates."""
        kv: KeyValue = await self.conn.js.key_value(self.conn.ns.instances_bucket)
        watcher: Any = await kv.watchall()  # nats-py leaves its methods untyped
        initial: dict[str, dict[str, Any]] = {}
        loaded = False
        last_check = time.monotonic()
        progress: list[int] = []
        try:
            while not self._stopping.is_set():
                if resync.is_set():
                    raise _Restart("resync requested")
                entry = await next_update(watcher, POLL)
                now = time.monotonic()
                if now - last_check >= self.health_interval:
                    last_check = now
                    await self._healthy(watcher._sub, progress)  # the watch's push subscription
                if entry is NO_NEWS:
                    continue
                if entry is None:  # the marker: every initial value has been delivered
                    if not loaded:
                        loaded = True
                        self.instances = initial
                        self.instances_ready.set()
                        self._broadcast(sse("snapshot", self.snapshot()))
                    continue
                if not isinstance(entry, KeyValue.Entry):  # the watcher's stop sentinel
                    raise _Restart("watch stopped")
                target = initial if not loaded else self.instances
                key = entry.key
                if is_delete_operation(entry.operation) or not entry.value:
                    if target.pop(key, None) is not None and loaded:
                        self._broadcast(sse("removed", {"key": key}))
                    continue
                try:
                    status = decode(InstanceStatus, entry.value)
                except MalformedMessage as exc:
                    log.warning("unreadable instance status", key=key, error=str(exc))
                    continue
                data = _instance_json(key, status)
                target[key] = data
                if loaded:
                    self._broadcast(sse("instance", data))
        finally:
            with contextlib.suppress(Exception):
                await wait_for(watcher.stop(), 2.0)

    async def _tail_audit(self, resync: asyncio.Event) -> None:
        """Follow the audit stream from the last event seen (the last ``audit_backlog`` at first)."""
        js = self.conn.js
        ns = self.conn.ns
        if self._audit_seq == 0:
            state = (await js.stream_info(ns.audit_stream)).state
            start = max(1, state.first_seq, state.last_seq - self.audit_backlog + 1)
        else:
            start = self._audit_seq + 1
        config = ConsumerConfig(
            ack_policy=AckPolicy.NONE,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=start,
            inactive_threshold=60.0,
            mem_storage=True,
        )
        psub = await js.pull_subscribe(ns.audit_wildcard, stream=ns.audit_stream, config=config)
        last_check = time.monotonic()
        progress: list[int] = []
        try:
            info = await psub.consumer_info()
            if not info.num_pending:
                self.audit_ready.set()
            while not self._stopping.is_set():
                if resync.is_set():
                    raise _Restart("resync requested")
                msgs = await fetch(psub, 256, timeout=POLL)
                now = time.monotonic()
                if now - last_check >= self.health_interval:
                    last_check = now
                    await self._healthy(psub, progress)
                for msg in msgs:
                    meta = msg.metadata
                    seq = meta.sequence.stream
                    if seq <= self._audit_seq:
                        continue
                    self._audit_seq = seq
                    try:
                        event = decode(AuditEvent, msg.data)
                    except MalformedMessage:
                        continue
                    data = event.model_dump(mode="json")
                    data["seq"] = seq
                    self.audit.append(data)
                    self._broadcast(sse("audit", data))
                    if not meta.num_pending:
                        self.audit_ready.set()
        finally:
            with contextlib.suppress(Exception):
                await wait_for(psub.unsubscribe(), 2.0)

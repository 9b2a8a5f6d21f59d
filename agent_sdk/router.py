"""One shared connection's control path: one subscription per control subject, one read per batch.

The agents of a shared :class:`mesh.transport.connection.Connection` each need the same few control
subjects (the agent, env, org and everything patterns) plus their own. Subscribed once per agent,
a republished kill reaches the process once per agent; here each subject is subscribed once for
the connection and every message is decoded once, then handed to the agents whose matching
keys include it. Reads of the kill records are coalesced the same way: the callers that ask in
one turn of the loop share one direct multi-get of the union of their keys, and one periodic
re-read covers every agent of the connection instead of one timer per agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import weakref
from collections.abc import Iterable
from typing import Protocol

import structlog

from mesh.errors import MalformedMessage
from mesh.protocol.controlupdate import ControlUpdate
from mesh.transport.connection import Connection
from mesh.transport.control import parse_control_message, read_records, read_records_batched
from mesh.transport.natstypes import KeyValue, Msg, Subscription

__all__ = ["ControlRouter", "Member", "router_for"]

log = structlog.get_logger("agent_sdk.router")

#: Keys per multi-get request: a bounded body, whatever the number of agents on the connection.
READ_CHUNK = 512


class Member(Protocol):
    """What the router needs of an agent (``agent_sdk.core.AgentCore``)."""

    closed: bool
    resync_interval: float
    heartbeat_interval: float

    async def beat(self) -> None: ...

    def on_update(self, update: ControlUpdate) -> None: ...

    def on_malformed(self, subject: str, error: str) -> None: ...

    def periodic_read(self, updates: dict[str, ControlUpdate]) -> None: ...

    def periodic_read_failed(self, error: str) -> None: ...


class _Batch:
    """Keys asked for in one turn of the loop, and the future of their one shared read."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv
        self.keys: set[str] = set()
        self.done: asyncio.Future[dict[str, ControlUpdate]] = asyncio.get_running_loop().create_future()
        self.task: asyncio.Future[None] | None = None


class ControlRouter:
    """The control subscriptions and reads of every agent on one shared connection."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        #: subject -> its members, in attach order (a dict as an ordered set).
        self._members: dict[str, dict[Member, None]] = {}
        self._subs: dict[str, Subscription] = {}
        #: subject -> resolved once the server has the subscription (SUB flushed).
        self._ready: dict[str, asyncio.Future[None]] = {}
        self._all: dict[Member, tuple[str, ...]] = {}
        self._batch: _Batch | None = None
        self._kv: KeyValue | None = None
        self._loop_task: asyncio.Task[None] | None = None
        #: heartbeat interval -> the members beating at it, and the one timer loop that drives them.
        self._beats: dict[float, dict[Member, None]] = {}
        self._beat_tasks: dict[float, asyncio.Task[None]] = {}
        self.malformed = 0

    # -- members ------------------------------------------------------------------------------------
    @property
    def subscriptions(self) -> int:
        return len(self._subs)

    async def attach(self, member: Member, subjects: Iterable[str], kv: KeyValue) -> None:
        """Deliver ``subjects`` to ``member``; returns once the server has every subscription."""
        subjects = tuple(subjects)
        self._kv = self._kv or kv
        self._all[member] = subjects
        loop = asyncio.get_running_loop()
        new: list[tuple[str, asyncio.Future[None]]] = []
        for subject in subjects:
            self._members.setdefault(subject, {})[member] = None
            if subject not in self._ready:
                fut: asyncio.Future[None] = loop.create_future()
                self._ready[subject] = fut
                new.append((subject, fut))
        waits = [self._ready[s] for s in subjects]
        nc = self.conn.nc
        try:
            for subject, _ in new:
                self._subs[subject] = await nc.subscribe(subject, cb=self._on_msg)
            if new:
                # Subscribe first, then read: the server must have the SUB before the read.
                await nc.flush()
            for _, fut in new:
                fut.set_result(None)
        except BaseException as exc:
            for subject, fut in new:
                if not fut.done():
                    fut.set_exception(exc if isinstance(exc, Exception) else ConnectionError("cancelled"))
                    fut.exception()  # retrieved: the other waiters get it through gather
                self._ready.pop(subject, None)
                sub = self._subs.pop(subject, None)
                if sub is not None:
                    with contextlib.suppress(Exception):
                        await sub.unsubscribe()
            await self.detach(member)
            raise
        try:
            await asyncio.gather(*(asyncio.shield(w) for w in waits))
        except BaseException:
            await self.detach(member)
            raise
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.create_task(self._resync_loop(), name="agent-sdk shared resync")

    def beat_for(self, member: Member) -> None:
        """Drive ``member``'s heartbeats from now on (after its start: never before ``started``)."""
        interval = member.heartbeat_interval
        self._beats.setdefault(interval, {})[member] = None
        task = self._beat_tasks.get(interval)
        if task is None or task.done():
            self._beat_tasks[interval] = asyncio.create_task(
                self._beat_loop(interval), name="agent-sdk shared heartbeats"
            )

    async def detach(self, member: Member) -> None:
        """Stop delivering to ``member``; drop the subscriptions no member needs any more."""
        subjects = self._all.pop(member, ())
        idle: list[Subscription] = []
        for subject in subjects:
            members = self._members.get(subject)
            if members is None:
                continue
            members.pop(member, None)
            if not members:
                del self._members[subject]
                self._ready.pop(subject, None)
                sub = self._subs.pop(subject, None)
                if sub is not None:
                    idle.append(sub)
        if not self._all and self._loop_task is not None:
            self._loop_task.cancel()
            self._loop_task = None
        interval = member.heartbeat_interval
        beating = self._beats.get(interval)
        if beating is not None:
            beating.pop(member, None)
            if not beating:
                del self._beats[interval]
                task = self._beat_tasks.pop(interval, None)
                if task is not None:
                    task.cancel()
        for sub in idle:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    @property
    def heartbeat_timers(self) -> int:
        return len(self._beat_tasks)

    async def _beat_loop(self, interval: float) -> None:
        # One timer for every member at this interval: their heartbeats (one message per
        # instance, as ever) leave together, in one write, instead of on a timer each.
        while True:
            await asyncio.sleep(interval)
            for member in list(self._beats.get(interval, ())):
                if member.closed:
                    continue
                try:
                    await member.beat()
                except Exception as exc:  # one member's failure must not silence the others
                    log.warning("heartbeat failed", error=repr(exc))

    # -- the push path ------------------------------------------------------------------------------
    async def _on_msg(self, msg: Msg) -> None:
        members = list(self._members.get(msg.subject, ()))
        if not members:
            return
        try:
            update = parse_control_message(self.conn.ns, msg)
        except MalformedMessage as exc:
            self._malformed(members, msg.subject, str(exc))
            return
        except Exception as exc:  # a callback that raises would be logged by nats-py and forgotten
            self._malformed(members, msg.subject, f"{type(exc).__name__}: {exc}")
            return
        for member in members:
            try:
                member.on_update(update)
            except Exception as exc:  # one agent's failure must not keep the kill from the others
                log.warning("delivering a control update failed", error=repr(exc))

    def _malformed(self, members: list[Member], subject: str, error: str) -> None:
        self.malformed += 1
        for member in members:
            with contextlib.suppress(Exception):
                member.on_malformed(subject, error)

    # -- reads --------------------------------------------------------------------------------------
    async def read(self, kv: KeyValue, keys: Iterable[str]) -> list[ControlUpdate]:
        """The state of ``keys``, read together with every other read asked for in this turn."""
        keys = sorted(keys)
        batch = self._batch
        if batch is None:
            batch = self._batch = _Batch(kv)
            batch.task = asyncio.ensure_future(self._run(batch))
        batch.keys.update(keys)
        got = await asyncio.shield(batch.done)
        return [got[k] for k in keys]

    async def _run(self, batch: _Batch) -> None:
        try:
            await asyncio.sleep(0)  # let the callers of this turn of the loop join the batch
            self._seal(batch)
            result = await self._read_union(batch.kv, sorted(batch.keys))
        except BaseException as exc:
            self._seal(batch)  # cancelled before the read: no later caller may join a dead batch
            batch.done.set_exception(exc if isinstance(exc, Exception) else ConnectionError("cancelled"))
            batch.done.exception()  # retrieved here; each caller re-raises it
            if not isinstance(exc, Exception):
                raise
            return
        batch.done.set_result(result)

    def _seal(self, batch: _Batch) -> None:
        if self._batch is batch:
            self._batch = None

    async def _read_union(self, kv: KeyValue, keys: list[str]) -> dict[str, ControlUpdate]:
        conn = self.conn
        chunks = [keys[i : i + READ_CHUNK] for i in range(0, len(keys), READ_CHUNK)]
        if conn.scoped:  # a scoped identity reads key by key anyway (mesh/transport/control.py)
            parts = [await read_records(kv, c) for c in chunks]
        else:
            parts = list(await asyncio.gather(*(read_records_batched(conn, kv, c) for c in chunks)))
        return {u.key: u for part in parts for u in part}

    async def _resync_loop(self) -> None:
        # A missed republish (or a dead subscription) must not leave an agent unkillable: one
        # re-read of the union of the keys covers every agent of the connection. Jittered, so
        # that processes started together do not re-read in lockstep.
        while True:
            interval = min((m.resync_interval for m in self._all), default=6.0)
            await asyncio.sleep(interval * random.uniform(0.8, 1.2))
            await self.resync_all()

    async def resync_all(self) -> None:
        """Re-read every member's keys in one batched read and hand each member its share."""
        members = [m for m in self._all if not m.closed]
        kv = self._kv
        if not members or kv is None or not self.conn.is_connected:
            return
        keys = {k for m in members for k in self._keys_of(m)}
        try:
            got = await self._read_union(kv, sorted(keys))
        except Exception as exc:
            for m in members:
                with contextlib.suppress(Exception):
                    m.periodic_read_failed(str(exc) or type(exc).__name__)
            return
        for m in members:
            if m.closed:
                continue
            try:
                m.periodic_read({k: got[k] for k in self._keys_of(m) if k in got})
            except Exception as exc:
                log.warning("applying a re-read failed", error=repr(exc))

    def _keys_of(self, member: Member) -> list[str]:
        ns = self.conn.ns
        return [ns.control_key_from_subject(s) for s in self._all.get(member, ())]


_routers: weakref.WeakKeyDictionary[Connection, ControlRouter] = weakref.WeakKeyDictionary()


def router_for(conn: Connection) -> ControlRouter:
    """The router of a shared connection (one per connection, made on first use)."""
    router = _routers.get(conn)
    if router is None:
        router = _routers[conn] = ControlRouter(conn)
    return router

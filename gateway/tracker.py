"""Follows every kill record for the gateway: one wildcard subscription, a full re-read on connect.

Subscribe first, then read the bucket, on every connect and reconnect (a kill written while we
were away is honoured before the next request is served); re-read on a timer too, because a
republished message can be missed. With NATS unreachable past ``fail_closed_after`` every
request is refused until a re-read succeeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import structlog

from gateway.errors import Refused
from gateway.kills import Applied, InForce, KillBook
from mesh.errors import MalformedMessage, MeshError
from mesh.protocol.controlupdate import ControlUpdate, decode_record
from mesh.protocol.models import KillRecord
from mesh.protocol.target import AgentURI
from mesh.runtime.aio import raise_if_cancelling, wait_for
from mesh.transport.connection import Connection
from mesh.transport.control import parse_control_message, read_records_batched
from mesh.transport.kvscan import scan_latest
from mesh.transport.natstypes import Msg, Subscription

__all__ = ["KillTracker", "refusal_message"]

log = structlog.get_logger("gateway.kills")

#: How long a request waits for a re-read in progress (after a reconnect) before it is refused.
SYNC_WAIT = 2.0


def refusal_message(record: KillRecord) -> str:
    """One readable line naming the record: who killed what, when, and why."""
    why = record.reason or "no reason given"
    when = record.issued_at.isoformat(timespec="seconds")
    return f"agent killed by {record.actor} ({record.target}) at {when}: {why}"


class KillTracker:
    """``check(agent, instance)`` is the hot path: a few dict lookups, no I/O."""

    def __init__(
        self,
        conn: Connection,
        *,
        fail_closed_after: float | None = 10.0,
        resync_every: float = 5.0,
    ) -> None:
        self.conn = conn
        self.ns = conn.ns
        self.book = KillBook(conn.ns)
        self.fail_closed_after = fail_closed_after
        self.resync_every = resync_every
        self.synced = asyncio.Event()
        self.fail_closed = False
        self.last_sync = 0.0
        self._last_contact = time.monotonic()
        self._sub: Subscription | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._bg: set[asyncio.Task[Any]] = set()
        self._lock = asyncio.Lock()
        self._listener: object | None = None
        #: Called with the InForce of each record newly in force (stream and tunnel cutters, acks).
        self.on_kill: list[Callable[[InForce], None]] = []
        #: Called with each control key whose record was cleared (resume acks).
        self.on_clear: list[Callable[[str], None]] = []
        #: Called when the gateway starts failing closed (streams and tunnels are cut then too).
        self.on_fail_closed: list[Callable[[], None]] = []
        self.malformed = 0
        self._malformed_at = -1.0

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        self._listener = self.conn.add_listener(self._on_disconnect, self._on_reconnect)
        self._sub = await self.conn.nc.subscribe(self.ns.control_subject(">"), cb=self._on_control)
        await self.resync()
        self._tasks.append(asyncio.create_task(self._resync_loop(), name="gateway resync"))
        if self.fail_closed_after is not None:
            self._tasks.append(asyncio.create_task(self._fail_closed_loop(), name="gateway fail-closed"))

    async def stop(self) -> None:
        if self._listener is not None:
            self.conn.remove_listener(self._listener)
        for task in [*self._tasks, *self._bg]:
            task.cancel()
        for task in [*self._tasks, *self._bg]:
            with contextlib.suppress(BaseException):
                await task
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()

    # -- decisions ------------------------------------------------------------------------------
    def check(self, agent: AgentURI, instance: str) -> None:
        """Raise :class:`Refused` unless this instance may act right now."""
        if self.fail_closed:
            raise Refused(
                f"refused: the gateway has had no contact with NATS for over {self.fail_closed_after:g}s "
                "(fail closed), so it cannot tell whether this agent was killed"
            )
        if not self.synced.is_set():
            raise Refused("refused: the gateway has not read the kill records yet (starting or re-syncing)")
        held = self.book.matching(agent, instance)
        if held is not None:
            raise Refused(refusal_message(held.record), held.record, held.key)

    async def admit(self, agent: AgentURI, instance: str) -> None:
        """:meth:`check`, waiting a moment for a re-read in progress rather than refusing at once."""
        if not self.synced.is_set() and not self.fail_closed:
            with contextlib.suppress(TimeoutError):
                await wait_for(self.synced.wait(), SYNC_WAIT)
        self.check(agent, instance)

    def health(self) -> dict[str, Any]:
        ok = self.synced.is_set() and not self.fail_closed
        return {
            "ok": ok,
            "state": "fail_closed" if self.fail_closed else ("serving" if ok else "syncing"),
            "nats_connected": self.conn.is_connected,
            "kill_records_in_force": len(self.book),
            "seconds_since_sync": round(time.monotonic() - self.last_sync, 3) if self.last_sync else None,
            "fail_closed_after": self.fail_closed_after,
            "malformed_control_messages": self.malformed,
        }

    # -- the push path --------------------------------------------------------------------------
    async def _on_control(self, msg: Msg) -> None:
        try:
            update = parse_control_message(self.ns, msg)
        except (MalformedMessage, Exception) as exc:  # never raise out of a nats-py callback
            self.malformed += 1
            now = time.monotonic()
            # At most once a second each: a flood of garbage must not become a flood of logs or reads.
            if now - self._malformed_at >= 1.0:
                self._malformed_at = now
                log.warning(
                    "ignored malformed control message",
                    subject=msg.subject,
                    error=str(exc)[:200],
                    count=self.malformed,
                )
                self._spawn(self.resync())  # the KV is the truth: a corrupt push may hide a real kill
            return
        self._applied(self.book.apply([update]))

    def _applied(self, out: Applied) -> None:
        for key in out.killed:
            held = next((r for r in self.book.in_force() if r.key == key), None)
            if held is None:
                continue
            log.info("kill observed", key=key, revision=held.revision, command_id=held.record.command_id)
            for cb in self.on_kill:
                cb(held)
        for key in out.cleared:
            log.info("kill cleared", key=key)
            for clear_cb in self.on_clear:
                clear_cb(key)
        if out.confirm:
            self._spawn(self._confirm(out.confirm))

    async def _confirm(self, keys: list[str]) -> None:
        try:
            kv = await self.conn.js.key_value(self.ns.control_bucket)
            updates = await read_records_batched(self.conn, kv, keys)
        except MeshError as exc:
            log.warning("confirming a resume failed; still refusing until the next re-read", error=str(exc))
            return
        self._applied(self.book.apply(updates, from_kv=True))

    # -- the read path --------------------------------------------------------------------------
    async def resync(self) -> bool:
        """Re-read the whole control bucket; True if it worked."""
        async with self._lock:
            try:
                entries = await scan_latest(self.conn, self.ns.control_bucket, timeout=3.0)
                updates = [
                    ControlUpdate(k, e.revision, decode_record(k, e.value)) for k, e in entries.items()
                ]
                gone = [k for k in self.book.held_keys() if k not in entries]
                if gone:
                    # Held but absent from the scan: read the tombstones, which carry revisions.
                    kv = await self.conn.js.key_value(self.ns.control_bucket)
                    updates += await read_records_batched(self.conn, kv, gone)
            except MeshError as exc:
                log.warning("re-reading kill records failed", error=str(exc))
                return False
            except Exception as exc:
                raise_if_cancelling()
                log.warning("re-reading kill records failed", error=f"{type(exc).__name__}: {exc}")
                return False
            self._applied(self.book.apply(updates, from_kv=True))
            self.last_sync = self._last_contact = time.monotonic()
            if self.fail_closed:
                self.fail_closed = False
                log.warning("kill records re-read: serving again", in_force=len(self.book))
            self.synced.set()
            return True

    async def _resync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.resync_every)
            await self.resync()

    async def _fail_closed_loop(self) -> None:
        limit = self.fail_closed_after
        assert limit is not None
        while True:
            await asyncio.sleep(min(0.5, limit / 4))
            if self.conn.is_connected and self.synced.is_set():
                self._last_contact = time.monotonic()
            elif not self.fail_closed and time.monotonic() - self._last_contact > limit:
                log.warning("no contact with NATS: refusing every request (fail closed)", seconds=limit)
                self.fail_closed = True
                for cb in self.on_fail_closed:
                    cb()

    async def _on_disconnect(self) -> None:
        log.warning("disconnected from NATS: serving from the last known kill records")

    async def _on_reconnect(self) -> None:
        # Hold requests until the records are re-read: a kill written while we were away counts.
        self.synced.clear()
        self._spawn(self._resync_until_done())

    async def _resync_until_done(self) -> None:
        while not await self.resync():
            await asyncio.sleep(0.2)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)

"""Coalesced output: audit events for detected transitions first, then status records, then deletions."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable

import structlog

from controller.state import Fleet, Transition, event_id
from controller.stats import Stats
from mesh.errors import MeshError
from mesh.protocol.codec import encode
from mesh.runtime.aio import raise_if_cancelling, wait_for
from mesh.transport import kvops
from mesh.transport.audit import publish_event
from mesh.transport.connection import Connection
from mesh.transport.natstypes import KeyValue

__all__ = ["Writer"]

log = structlog.get_logger("controller.writer")

#: Concurrent KV puts in flight per flush.
CHUNK = 256


class Writer:
    """Flushes the fleet to JetStream: at once on a change, ``last_seen`` at most every few seconds."""

    def __init__(
        self,
        conn: Connection,
        kv: KeyValue,
        fleet: Fleet,
        stats: Stats,
        *,
        actor: str,
        may_write: Callable[[], bool],
        flush_every: float = 0.25,
    ) -> None:
        self.conn = conn
        self.kv = kv
        self.fleet = fleet
        self.stats = stats
        self.actor = actor
        self.may_write = may_write
        self.flush_every = flush_every
        self.wake = asyncio.Event()
        self._events: deque[Transition] = deque()
        self._lock = asyncio.Lock()
        self._last_refresh = 0.0

    @property
    def pending_events(self) -> int:
        return len(self._events)

    def submit(self, t: Transition) -> None:
        """Called for every transition (from the hot path too): queue its audit event, wake up."""
        if t.event is not None:
            self._events.append(t)
            log.info(
                "transition", key=t.key, old=t.old.value if t.old else None, new=t.new.value, cause=t.cause
            )
        elif t.old is not None:
            log.info("status", key=t.key, old=t.old.value, new=t.new.value, cause=t.cause)
        self.wake.set()

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await wait_for(self.wake.wait(), self.flush_every)
            self.wake.clear()
            now = time.monotonic()
            refresh = now - self._last_refresh >= min(1.0, self.fleet.policy.refresh_every / 2)
            if refresh:
                self._last_refresh = now
            try:
                ok = await self.flush(refresh=refresh)
            except Exception as exc:  # keep the writer alive whatever happens
                raise_if_cancelling()
                log.warning("flush failed", error=str(exc) or type(exc).__name__)
                ok = False
            if not ok:
                await asyncio.sleep(self.flush_every)

    async def flush(self, *, refresh: bool = False) -> bool:
        """Write what is due; False if something is left for later (NATS down, lease lost)."""
        async with self._lock:
            if not self.may_write():
                return False
            if not await self._publish_events():
                return False
            await self._write_records(refresh)
            await self._delete_expired()
            return True

    async def _publish_events(self) -> bool:
        while self._events:
            t = self._events[0]
            assert t.event is not None
            eid = event_id(t.key, t.event, self.fleet.event_basis(t))
            try:
                await publish_event(self.conn.js, self.conn.ns, t.audit_event(self.actor, eid), timeout=2.0)
            except MeshError as exc:
                log.warning("audit publish failed, will retry", key=t.key, type=t.event.value, error=str(exc))
                return False
            self._events.popleft()
            self.fleet.published(t.key)
            self.stats.audit_events += 1
        return True

    async def _write_records(self, refresh: bool) -> None:
        entries = self.fleet.due(time.time(), refresh=refresh)
        if not entries:
            return
        batch = [(e.key, encode(e.record()), e.last_seen) for e in entries]
        failed: list[str] = []
        for i in range(0, len(batch), CHUNK):
            chunk = batch[i : i + CHUNK]
            results = await asyncio.gather(*(self.kv.put(k, v) for k, v, _ in chunk), return_exceptions=True)
            for (key, _, seen), result in zip(chunk, results, strict=True):
                if isinstance(result, BaseException):
                    failed.append(key)
                else:
                    self.fleet.written(key, result, seen, time.time())
        self.stats.writes += len(batch) - len(failed)
        if failed:
            self.stats.write_errors += len(failed)
            self.fleet.retry(failed)
            log.warning("status writes failed, will retry", failed=len(failed))

    async def _delete_expired(self) -> None:
        keys = self.fleet.take_expired()
        for i, key in enumerate(keys):
            try:
                await kvops.delete(self.kv, key)
            except Exception as exc:
                self.fleet.expired.update(keys[i:])
                log.warning("delete failed, will retry", key=key, error=str(exc) or type(exc).__name__)
                return
            self.stats.deletes += 1
            log.info("expired", key=key)

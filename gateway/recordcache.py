"""Records of the gateway's key bucket, cached: LRU-bounded, dropped on the bucket's republish,
one read per key at a time (a burst of requests with a new key waits for the same answer)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from typing import Generic, TypeVar

import structlog
from pydantic import BaseModel

from gateway.errors import UnknownKey
from gateway.keys import hash_key
from mesh.errors import MeshError
from mesh.transport.connection import Connection
from mesh.transport.kvscan import read_latest
from mesh.transport.natstypes import Msg, Subscription

__all__ = ["RecordCache"]

log = structlog.get_logger("gateway.keys")

R = TypeVar("R", bound=BaseModel)


class RecordCache(Generic[R]):
    """KV key -> record (None: no such key) for the keys under ``kv_prefix`` of the key bucket.

    A write to a key (republished on ``<prefix>.gwkey.<key>``) drops it; a reconnect drops all,
    since writes may have been missed. A read that raced an invalidation is not cached.
    """

    def __init__(self, conn: Connection, model: type[R], *, kv_prefix: str = "", size: int = 10_000) -> None:
        self.conn = conn
        self.model = model
        self.kv_prefix = kv_prefix
        self.size = size
        self._cache: OrderedDict[str, R | None] = OrderedDict()
        self._head = f"{conn.ns.prefix}.gwkey."
        self._sub: Subscription | None = None
        self._listener: object | None = None
        self._reads: dict[str, asyncio.Future[R | None]] = {}
        #: Bumped on every invalidation: a read that raced one is not cached (it may be stale).
        self._generation = 0

    async def start(self) -> None:
        self._listener = self.conn.add_listener(None, self._on_reconnect)
        self._sub = await self.conn.nc.subscribe(f"{self._head}{self.kv_prefix}>", cb=self._on_write)

    async def stop(self) -> None:
        if self._listener is not None:
            self.conn.remove_listener(self._listener)
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()

    async def _on_write(self, msg: Msg) -> None:
        self._generation += 1
        self._cache.pop(msg.subject[len(self._head) :], None)

    async def _on_reconnect(self) -> None:
        self._generation += 1
        self._cache.clear()

    async def lookup(self, key: str) -> R | None:
        """The record of ``key`` (stored under its hash); raises a MeshError when the bucket cannot be
        read (fail closed)."""
        return await self.get(self.kv_prefix + hash_key(key))

    async def verify(self, key: str, what: str) -> R | None:
        """:meth:`lookup`, failing closed: a bucket we cannot read must not let anyone through, so
        that is :class:`UnknownKey` (``what`` names the kind of key)."""
        try:
            return await self.lookup(key)
        except MeshError as exc:
            raise UnknownKey(f"cannot verify the {what} right now (NATS: {type(exc).__name__})") from None

    async def get(self, kv_key: str) -> R | None:
        """The record under ``kv_key``; raises a MeshError when the bucket cannot be read (fail closed)."""
        if kv_key in self._cache:
            self._cache.move_to_end(kv_key)
            return self._cache[kv_key]
        pending = self._reads.get(kv_key)
        if pending is None:
            pending = asyncio.ensure_future(self._read(kv_key))
            self._reads[kv_key] = pending
            pending.add_done_callback(lambda _f: self._reads.pop(kv_key, None))
        return await asyncio.shield(pending)

    async def _read(self, kv_key: str) -> R | None:
        generation = self._generation
        latest = await read_latest(self.conn, self.conn.ns.gateway_keys_bucket, [kv_key], timeout=2.0)
        entry = (latest or {}).get(kv_key)
        record: R | None = None
        if entry is not None and entry.value is not None:
            try:
                record = self.model.model_validate_json(entry.value)
            except ValueError:
                key_id = kv_key[len(self.kv_prefix) :][:12]
                log.warning("unreadable key record: refused", kind=self.model.__name__, key_id=key_id)
        if generation == self._generation:
            self._cache[kv_key] = record
            if len(self._cache) > self.size:
                self._cache.popitem(last=False)
        return record

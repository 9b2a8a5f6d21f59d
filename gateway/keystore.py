"""Virtual keys in the keys bucket: create, list, revoke, and the gateway's cache of lookups.

The cache drops an entry the moment the bucket republishes a write to it, so a revocation
takes effect on the next request; on reconnect the whole cache is dropped (pushes may be lost).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict

import structlog
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from gateway.keys import KeyRecord, hash_key, new_key
from mesh.connection import Connection
from mesh.errors import NotFound
from mesh.kvscan import put_key, read_latest, scan_latest
from mesh.models import utcnow
from mesh.target import parse_agent_uri, validate_instance

__all__ = ["KeyCache", "create_key", "list_keys", "revoke_key"]

log = structlog.get_logger("gateway.keys")

#: Lookups remembered, found or not (a bound, so random keys cannot grow memory without end).
CACHE_SIZE = 10_000


async def create_key(
    conn: Connection, agent_uri: str, *, instance: str | None, upstream: str | None, actor: str
) -> tuple[str, KeyRecord]:
    """Mint a key for ``agent_uri``; returns the key (shown once) and its stored record."""
    agent = parse_agent_uri(agent_uri)
    if instance is not None:
        validate_instance(instance)
    key = new_key()
    digest = hash_key(key)
    record = KeyRecord(
        id=digest[:12], agent_uri=str(agent), instance=instance, upstream=upstream, created_by=actor
    )
    await put_key(conn, conn.ns.gateway_keys_bucket, digest, record.model_dump_json().encode())
    return key, record


async def list_keys(conn: Connection) -> list[KeyRecord]:
    out: list[KeyRecord] = []
    for entry in (await scan_latest(conn, conn.ns.gateway_keys_bucket)).values():
        with contextlib.suppress(ValueError):
            out.append(KeyRecord.model_validate_json(entry.value))
    return sorted(out, key=lambda r: (r.agent_uri, r.created_at))


async def revoke_key(conn: Connection, key_id: str, *, actor: str) -> KeyRecord:
    """Mark the key whose id (or full hash) starts with ``key_id`` revoked; the record stays, for audit."""
    entries = await scan_latest(conn, conn.ns.gateway_keys_bucket)
    found = [(k, e) for k, e in entries.items() if len(key_id) >= 6 and k.startswith(key_id.lower())]
    if len(found) != 1:
        what = "no key" if not found else f"{len(found)} keys"
        raise NotFound(f"{what} with id {key_id!r}: see `mesh gateway key list`")
    digest, entry = found[0]
    record = KeyRecord.model_validate_json(entry.value)
    if record.revoked_at is None:
        record = record.model_copy(update={"revoked_at": utcnow(), "revoked_by": actor})
        await put_key(conn, conn.ns.gateway_keys_bucket, digest, record.model_dump_json().encode())
    return record


class KeyCache:
    """Hash -> record (or None: not a key), LRU-bounded, invalidated by the bucket's republish."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._cache: OrderedDict[str, KeyRecord | None] = OrderedDict()
        self._sub: Subscription | None = None
        self._listener: object | None = None
        self._head = f"{conn.ns.prefix}.gwkey."
        self._reads: dict[str, asyncio.Future[KeyRecord | None]] = {}
        #: Bumped on every invalidation: a read that raced one is not cached (it may be stale).
        self._generation = 0

    async def start(self) -> None:
        self._listener = self.conn.add_listener(None, self._on_reconnect)
        self._sub = await self.conn.nc.subscribe(f"{self._head}>", cb=self._on_write)

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

    async def lookup(self, key: str) -> KeyRecord | None:
        """The record of ``key``; raises a MeshError when the bucket cannot be read (fail closed)."""
        digest = hash_key(key)
        if digest in self._cache:
            self._cache.move_to_end(digest)
            return self._cache[digest]
        # One read per key at a time: a burst of requests with a new key waits for the same answer.
        pending = self._reads.get(digest)
        if pending is None:
            pending = asyncio.ensure_future(self._read(digest))
            self._reads[digest] = pending
            pending.add_done_callback(lambda _f: self._reads.pop(digest, None))
        return await asyncio.shield(pending)

    async def _read(self, digest: str) -> KeyRecord | None:
        generation = self._generation
        latest = await read_latest(self.conn, self.conn.ns.gateway_keys_bucket, [digest], timeout=2.0)
        entry = (latest or {}).get(digest)
        record: KeyRecord | None = None
        if entry is not None and entry.value is not None:
            try:
                record = KeyRecord.model_validate_json(entry.value)
            except ValueError:
                log.warning("unreadable key record: refused", key_id=digest[:12])
        if generation == self._generation:
            self._cache[digest] = record
        if len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return record

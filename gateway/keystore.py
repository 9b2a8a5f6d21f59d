"""The keys bucket: one store for each kind of key (create, list, revoke), and the gateway's cache.

Agent virtual keys are stored under their sha256, the API's operator keys under ``api.<sha256>``
(see ``gateway.api.apikeys``). The cache drops an entry the moment the bucket republishes a write
to it, so a revocation takes effect on the next request; on reconnect the whole cache is dropped.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import structlog

from gateway.keys import KeyRecord, StoredKey, hash_key, new_key
from gateway.recordcache import RecordCache
from mesh.errors import NotFound
from mesh.protocol.models import utcnow
from mesh.protocol.target import parse_agent_uri, validate_instance
from mesh.transport.connection import Connection
from mesh.transport.kvscan import KVEntry, put_key, scan_latest

__all__ = ["AGENT_KEYS", "KeyStore", "create_key", "list_keys", "revoke_key"]

log = structlog.get_logger("gateway.keys")

R = TypeVar("R", bound=StoredKey)


class KeyStore(Generic[R]):
    """Records of ``model`` under ``kv_prefix`` + a key's sha256; ``noun`` and ``list_command`` name
    them in errors, ``order`` sorts a listing; a cache of lookups remembers ``cache_size`` of them, found
    or not (a bound, so random keys cannot grow memory without end)."""

    def __init__(
        self,
        model: type[R],
        *,
        kv_prefix: str,
        noun: str,
        list_command: str,
        order: Callable[[R], Any],
        cache_size: int,
    ) -> None:
        self.model = model
        self.kv_prefix = kv_prefix
        self.noun = noun
        self.list_command = list_command
        self.order = order
        self.cache_size = cache_size

    def cache(self, conn: Connection) -> RecordCache[R]:
        """The gateway's cache of lookups by key (see :class:`RecordCache`)."""
        return RecordCache(conn, self.model, kv_prefix=self.kv_prefix, size=self.cache_size)

    async def create(self, conn: Connection, key: str, build: Callable[[str], R]) -> R:
        """Store the record ``build(id)`` makes for ``key`` (only its hash is stored); returns it."""
        digest = hash_key(key)
        record = build(digest[:12])
        await self._put(conn, self.kv_prefix + digest, record)
        return record

    async def list(self, conn: Connection) -> list[R]:
        out: list[R] = []
        for entry in (await self._scan(conn)).values():
            with contextlib.suppress(ValueError):  # another kind's record, or one from a newer version
                out.append(self.model.model_validate_json(entry.value))
        return sorted(out, key=self.order)

    async def revoke(self, conn: Connection, key_id: str, *, actor: str) -> R:
        """Mark the key whose id (or full hash) starts with ``key_id`` revoked; its record stays (audit)."""
        wanted = self.kv_prefix + key_id.lower()
        entries = await self._scan(conn)
        found = [(k, e) for k, e in entries.items() if len(key_id) >= 6 and k.startswith(wanted)]
        if len(found) != 1:
            what = f"no {self.noun}" if not found else f"{len(found)} {self.noun}s"
            raise NotFound(f"{what} with id {key_id!r}: see `{self.list_command}`")
        kv_key, entry = found[0]
        record = self.model.model_validate_json(entry.value)
        if record.revoked_at is None:
            record = record.model_copy(update={"revoked_at": utcnow(), "revoked_by": actor})
            await self._put(conn, kv_key, record)
        return record

    async def _scan(self, conn: Connection) -> dict[str, KVEntry]:
        return await scan_latest(
            conn, conn.ns.gateway_keys_bucket, self.kv_prefix + "*" if self.kv_prefix else ">"
        )

    async def _put(self, conn: Connection, kv_key: str, record: R) -> None:
        await put_key(conn, conn.ns.gateway_keys_bucket, kv_key, record.model_dump_json().encode())


AGENT_KEYS = KeyStore(
    KeyRecord,
    kv_prefix="",
    noun="key",
    list_command="mesh gateway key list",
    order=lambda r: (r.agent_uri, r.created_at),
    cache_size=10_000,
)


async def create_key(
    conn: Connection, agent_uri: str, *, instance: str | None, upstream: str | None, actor: str
) -> tuple[str, KeyRecord]:
    """Mint a key for ``agent_uri``; returns the key (shown once) and its stored record."""
    agent = parse_agent_uri(agent_uri)
    if instance is not None:
        validate_instance(instance)
    key = new_key()
    record = await AGENT_KEYS.create(
        conn,
        key,
        lambda key_id: KeyRecord(
            id=key_id, agent_uri=str(agent), instance=instance, upstream=upstream, created_by=actor
        ),
    )
    return key, record


async def list_keys(conn: Connection) -> list[KeyRecord]:
    return await AGENT_KEYS.list(conn)


async def revoke_key(conn: Connection, key_id: str, *, actor: str) -> KeyRecord:
    return await AGENT_KEYS.revoke(conn, key_id, actor=actor)

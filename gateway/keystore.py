"""Virtual keys in the keys bucket: create, list, revoke, and the gateway's cache of lookups.

The cache drops an entry the moment the bucket republishes a write to it, so a revocation
takes effect on the next request; on reconnect the whole cache is dropped (pushes may be lost).
"""

from __future__ import annotations

import contextlib

import structlog

from gateway.keys import KeyRecord, hash_key, new_key
from gateway.recordcache import RecordCache
from mesh.errors import NotFound
from mesh.protocol.models import utcnow
from mesh.protocol.target import parse_agent_uri, validate_instance
from mesh.transport.connection import Connection
from mesh.transport.kvscan import put_key, scan_latest

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


class KeyCache(RecordCache[KeyRecord]):
    """Agent keys by hash, cached (see :class:`RecordCache`)."""

    def __init__(self, conn: Connection) -> None:
        super().__init__(conn, KeyRecord, size=CACHE_SIZE)

    async def lookup(self, key: str) -> KeyRecord | None:
        """The record of ``key``; raises a MeshError when the bucket cannot be read (fail closed)."""
        return await self.get(hash_key(key))

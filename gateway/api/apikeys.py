"""Operator and auditor API keys (``mo-...``): stored as sha256 in the gateway keys bucket, cached.

They live next to the agents' virtual keys, under ``api.<sha256>``, so the same republish drops a
revoked one from every gateway's cache at once; an agent key can never be read as one (other
prefix, other KV key). Creating one takes the NATS ``operator`` role (it writes that bucket).
"""

from __future__ import annotations

import contextlib
import secrets
from datetime import datetime
from typing import Literal

import structlog
from pydantic import BaseModel, ConfigDict, Field

from gateway.keys import hash_key
from gateway.recordcache import RecordCache
from mesh.errors import NotFound
from mesh.protocol.models import utcnow
from mesh.transport.connection import Connection
from mesh.transport.kvscan import put_key, scan_latest

__all__ = [
    "API_KEY_PREFIX",
    "ApiKeyCache",
    "ApiKeyRecord",
    "OperatorRole",
    "create_api_key",
    "list_api_keys",
    "revoke_api_key",
]

log = structlog.get_logger("gateway.api.keys")

API_KEY_PREFIX = "mo-"
KV_PREFIX = "api."
OperatorRole = Literal["operator", "auditor"]
CACHE_SIZE = 1000


class ApiKeyRecord(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    v: int = 1
    id: str = Field(min_length=12, max_length=12)
    role: OperatorRole
    #: Who the key speaks for: recorded as the actor of its kills and resumes (``api:NAME``).
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$")
    created_at: datetime = Field(default_factory=utcnow)
    created_by: str = Field(default="unknown", max_length=256)
    revoked_at: datetime | None = None
    revoked_by: str | None = Field(default=None, max_length=256)

    @property
    def actor(self) -> str:
        return f"api:{self.name}"


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


async def create_api_key(
    conn: Connection, role: OperatorRole, name: str, *, actor: str
) -> tuple[str, ApiKeyRecord]:
    """Mint an API key for ``role``; returns the key (shown once) and its stored record."""
    key = new_api_key()
    digest = hash_key(key)
    record = ApiKeyRecord(id=digest[:12], role=role, name=name, created_by=actor)
    await put_key(conn, conn.ns.gateway_keys_bucket, KV_PREFIX + digest, record.model_dump_json().encode())
    return key, record


async def list_api_keys(conn: Connection) -> list[ApiKeyRecord]:
    out: list[ApiKeyRecord] = []
    entries = await scan_latest(conn, conn.ns.gateway_keys_bucket, KV_PREFIX + "*")
    for entry in entries.values():
        with contextlib.suppress(ValueError):
            out.append(ApiKeyRecord.model_validate_json(entry.value))
    return sorted(out, key=lambda r: (r.name, r.created_at))


async def revoke_api_key(conn: Connection, key_id: str, *, actor: str) -> ApiKeyRecord:
    entries = await scan_latest(conn, conn.ns.gateway_keys_bucket, KV_PREFIX + "*")
    wanted = KV_PREFIX + key_id.lower()
    found = [(k, e) for k, e in entries.items() if len(key_id) >= 6 and k.startswith(wanted)]
    if len(found) != 1:
        what = "no API key" if not found else f"{len(found)} API keys"
        raise NotFound(f"{what} with id {key_id!r}: see `mesh gateway api-key list`")
    kv_key, entry = found[0]
    record = ApiKeyRecord.model_validate_json(entry.value)
    if record.revoked_at is None:
        record = record.model_copy(update={"revoked_at": utcnow(), "revoked_by": actor})
        await put_key(conn, conn.ns.gateway_keys_bucket, kv_key, record.model_dump_json().encode())
    return record


class ApiKeyCache(RecordCache[ApiKeyRecord]):
    """Operator API keys by hash, cached (see :class:`RecordCache`)."""

    def __init__(self, conn: Connection) -> None:
        super().__init__(conn, ApiKeyRecord, kv_prefix=KV_PREFIX, size=CACHE_SIZE)

    async def lookup(self, key: str) -> ApiKeyRecord | None:
        """The record of ``key``; raises a MeshError when the bucket cannot be read (fail closed)."""
        return await self.get(KV_PREFIX + hash_key(key))

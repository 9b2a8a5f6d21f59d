"""Operator and auditor API keys (``mo-...``): stored as sha256 in the gateway keys bucket, cached.

They live next to the agents' virtual keys, under ``api.<sha256>``, so the same republish drops a
revoked one from every gateway's cache at once; an agent key can never be read as one (other
prefix, other KV key). Creating one takes the NATS ``operator`` role (it writes that bucket).
"""

from __future__ import annotations

import secrets
from typing import Literal

import structlog
from pydantic import Field

from gateway.keys import StoredKey
from gateway.keystore import KeyStore
from mesh.transport.connection import Connection

__all__ = [
    "API_KEYS",
    "API_KEY_PREFIX",
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


class ApiKeyRecord(StoredKey):
    role: OperatorRole
    #: Who the key speaks for: recorded as the actor of its kills and resumes (``api:NAME``).
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$")

    @property
    def actor(self) -> str:
        return f"api:{self.name}"


API_KEYS = KeyStore(
    ApiKeyRecord,
    kv_prefix=KV_PREFIX,
    noun="API key",
    list_command="mesh gateway api-key list",
    order=lambda r: (r.name, r.created_at),
    cache_size=1000,
)


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


async def create_api_key(
    conn: Connection, role: OperatorRole, name: str, *, actor: str
) -> tuple[str, ApiKeyRecord]:
    """Mint an API key for ``role``; returns the key (shown once) and its stored record."""
    key = new_api_key()
    record = await API_KEYS.create(
        conn, key, lambda key_id: ApiKeyRecord(id=key_id, role=role, name=name, created_by=actor)
    )
    return key, record


async def list_api_keys(conn: Connection) -> list[ApiKeyRecord]:
    return await API_KEYS.list(conn)


async def revoke_api_key(conn: Connection, key_id: str, *, actor: str) -> ApiKeyRecord:
    return await API_KEYS.revoke(conn, key_id, actor=actor)

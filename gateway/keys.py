"""Virtual keys (pure): minting, hashing, the stored record, and which instance a request acts as."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from gateway.errors import InstanceNotAllowed, RevokedKey, UnknownKey
from mesh.errors import InvalidTarget
from mesh.protocol.models import utcnow
from mesh.protocol.target import AgentURI, parse_agent_uri, validate_instance

__all__ = [
    "DEFAULT_INSTANCE",
    "KEY_PREFIX",
    "Identity",
    "KeyRecord",
    "StoredKey",
    "check_key_shape",
    "hash_key",
    "new_key",
    "resolve_identity",
]

KEY_PREFIX = "mk-"
#: The instance a request acts as when neither its key nor its header names one.
DEFAULT_INSTANCE = "gateway"
_MAX_KEY = 128


def new_key() -> str:
    """A fresh virtual key: 256 random bits, URL-safe, recognisable by its prefix."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """The sha256 (hex) a key is stored under; the key itself is never stored."""
    return hashlib.sha256(key.encode()).hexdigest()


def check_key_shape(key: str | None) -> str:
    """The key if it looks like one of ours, else :class:`UnknownKey` (no lookup for garbage)."""
    if not key:
        raise UnknownKey("no virtual key: send it as the API key (Authorization: Bearer mk-...)")
    if not key.startswith(KEY_PREFIX) or len(key) > _MAX_KEY or not key.isascii():
        raise UnknownKey("not a gateway virtual key (they start with 'mk-')")
    return key


class StoredKey(BaseModel):
    """What every record in the keys bucket holds: its id, who made it, and whether it was revoked."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    v: int = 1
    #: The first 12 hex digits of the hash: how a key is named in lists, logs and errors.
    id: str = Field(min_length=12, max_length=12)
    created_at: datetime = Field(default_factory=utcnow)
    created_by: str = Field(default="unknown", max_length=256)
    revoked_at: datetime | None = None
    revoked_by: str | None = Field(default=None, max_length=256)


class KeyRecord(StoredKey):
    """The value stored under a virtual key's hash: who the key acts as, and whether it still works."""

    agent_uri: str = Field(max_length=256)
    #: The one instance this key acts as; None lets the caller choose with X-Mesh-Instance.
    instance: str | None = Field(default=None, max_length=64)
    #: The only upstream this key may use; None allows every configured one.
    upstream: str | None = Field(default=None, max_length=64)

    @property
    def agent(self) -> AgentURI:
        return parse_agent_uri(self.agent_uri)


class Identity(BaseModel):
    """Who a request acts as: the agent, the instance, and the key (by id) that proved it."""

    model_config = ConfigDict(frozen=True)

    agent_uri: str
    instance: str
    key_id: str
    upstream: str | None = None

    @property
    def agent(self) -> AgentURI:
        return parse_agent_uri(self.agent_uri)


def resolve_identity(
    record: KeyRecord | None, header_instance: str | None, default_instance: str = DEFAULT_INSTANCE
) -> Identity:
    """Check the key's record and the ``X-Mesh-Instance`` header; raise if either refuses."""
    if record is None:
        raise UnknownKey("unknown virtual key")
    if record.revoked_at is not None:
        raise RevokedKey(record.id)
    instance = record.instance or default_instance
    if header_instance:
        try:
            validate_instance(header_instance)
        except InvalidTarget as exc:
            raise InstanceNotAllowed(f"X-Mesh-Instance: {exc.reason}") from None
        if record.instance is not None and header_instance != record.instance:
            raise InstanceNotAllowed(
                f"X-Mesh-Instance {header_instance!r} is not allowed: key {record.id} acts as "
                f"instance {record.instance!r} only"
            )
        instance = header_instance
    return Identity(agent_uri=record.agent_uri, instance=instance, key_id=record.id, upstream=record.upstream)

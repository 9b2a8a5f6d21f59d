"""Identities (an agent, or a person with a role and a scope) and their bearer tokens (pure)."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mesh.errors import ConfigError, InvalidTarget
from mesh.protocol.target import WILDCARD, parse_agent_uri, parse_target, validate_instance

__all__ = [
    "ACTOR_KEY_PREFIX",
    "TOKEN_PREFIX",
    "ActorKey",
    "CredentialRecord",
    "Identity",
    "Role",
    "actor_key_name",
    "hash_secret",
    "inbox_prefix",
    "new_token",
    "parse_token",
    "secret_matches",
]

#: Every mesh token starts with this, so a client (and a leaked-secret scanner) can recognise one.
TOKEN_PREFIX = "mesh1"
_TOKEN = re.compile(rf"{TOKEN_PREFIX}_([0-9a-f]{{16}})_([A-Za-z0-9_-]{{43}})")
_CRED_ID = re.compile(r"[0-9a-f]{16}")
#: Where the identities bucket keeps a credential's public signing key: ``pub.<id>``. Readers of
#: the audit log may read these keys (never the credential records, which hold the secret's hash).
ACTOR_KEY_PREFIX = "pub"
#: A person's name: what the audit log shows as the actor.
_PERSON = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+-]{0,127}")


class Role(StrEnum):
    AGENT = "agent"
    OPERATOR = "operator"
    AUDITOR = "auditor"


class Identity(BaseModel):
    """Who a credential is: an agent (``scope`` is its URI, optionally one ``instance``), or a
    person (``name``) with a role over ``scope``, a target such as ``agent://acme/*/*``.

    A person's scope may hold wildcards only as a suffix (``ORG/*/*``, ``ORG/ENV/*``,
    ``*/*/*``), so that it reads as "this org" or "this env of this org".
    """

    model_config = ConfigDict(frozen=True)

    role: Role
    scope: str
    name: str = ""
    instance: str | None = None

    @model_validator(mode="after")
    def _check(self) -> Identity:
        if self.role is Role.AGENT:
            parse_agent_uri(self.scope)
            if self.instance is not None:
                validate_instance(self.instance)
            return self
        if self.instance is not None:
            raise InvalidTarget(self.scope, "instance", "only an agent credential names an instance")
        if not _PERSON.fullmatch(self.name):
            raise InvalidTarget(
                self.name or "(empty)",
                "name",
                "a person's name is 1-128 letters, digits or '_.@+-', starting with a letter or digit",
            )
        target = parse_target(self.scope)
        if target.instance is not None:
            raise InvalidTarget(self.scope, "scope", "a person's scope names agents, not one instance")
        segments = list(target.tokens)
        first_wild = next((i for i, s in enumerate(segments) if s == WILDCARD), len(segments))
        if any(s != WILDCARD for s in segments[first_wild:]):
            raise InvalidTarget(
                self.scope,
                "scope",
                "wildcards only at the end: agent://ORG/*/*, agent://ORG/ENV/*, agent://*/*/*",
            )
        return self

    @property
    def segments(self) -> tuple[str, str, str]:
        """(org, env, name) of the scope; ``*`` where the scope is a wildcard."""
        target = parse_target(self.scope)
        org, env, name = target.tokens
        return org, env, name

    @property
    def is_global(self) -> bool:
        return self.segments == (WILDCARD, WILDCARD, WILDCARD)

    @property
    def actor(self) -> str:
        """What the audit log records as the actor of this identity."""
        if self.role is Role.AGENT:
            return f"{self.scope}#{self.instance}" if self.instance else self.scope
        return self.name

    def describe(self) -> str:
        if self.role is Role.AGENT:
            return f"agent {self.actor}"
        return f"{self.role.value} {self.name} over {self.scope}"


class CredentialRecord(BaseModel):
    """What the identities bucket stores under a credential id: never the secret itself."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(pattern=r"^[0-9a-f]{16}$")
    identity: Identity
    secret_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    issued_at: datetime
    issued_by: str = "unknown"


class ActorKey(BaseModel):
    """The public half of a credential's audit signing key, with the identity it speaks for.

    Written by whoever issues the credential, next to its record; kept when the credential is
    revoked, so that the events it signed while it was valid still verify.
    """

    model_config = ConfigDict(frozen=True)

    id: str = Field(pattern=r"^[0-9a-f]{16}$")
    identity: Identity
    #: The Ed25519 public key, base64url without padding (32 bytes).
    public_key: str = Field(min_length=43, max_length=43)
    issued_at: datetime


def actor_key_name(cred_id: str) -> str:
    """The identities-bucket key of ``cred_id``'s public signing key."""
    if not _CRED_ID.fullmatch(cred_id):
        raise ConfigError(f"invalid credential id {cred_id!r}: expected 16 hex digits")
    return f"{ACTOR_KEY_PREFIX}.{cred_id}"


def new_token() -> tuple[str, str, str]:
    """A fresh credential: (id, secret, token). The token is ``mesh1_<id>_<secret>``."""
    cred_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return cred_id, secret, f"{TOKEN_PREFIX}_{cred_id}_{secret}"


def parse_token(token: str) -> tuple[str, str] | None:
    """(id, secret) of a mesh token, or ``None`` when ``token`` is not one."""
    match = _TOKEN.fullmatch(token.strip())
    return (match.group(1), match.group(2)) if match else None


def hash_secret(secret: str) -> str:
    # The secret is 256 random bits: nothing to brute-force, so a fast hash is the right one.
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, record: CredentialRecord) -> bool:
    return hmac.compare_digest(hash_secret(secret), record.secret_sha256)


def inbox_prefix(cred_id: str) -> str:
    """The reply-subject prefix of one credential: only it may subscribe there."""
    if not _CRED_ID.fullmatch(cred_id):
        raise ConfigError(f"invalid credential id {cred_id!r}: expected 16 hex digits")
    return f"_INBOX_{cred_id}"

"""The identities bucket: issue, look up, list and revoke credentials (only hashes are stored)."""

from __future__ import annotations

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from mesh.errors import NotProvisioned
from mesh.protocol.actorsig import public_key
from mesh.protocol.codec import decode, encode
from mesh.protocol.identity import (
    ACTOR_KEY_PREFIX,
    ActorKey,
    CredentialRecord,
    Identity,
    actor_key_name,
    hash_secret,
    new_token,
)
from mesh.protocol.models import utcnow
from mesh.protocol.subjects import Namespace
from mesh.transport.connection import translate_error

__all__ = ["identities_bucket", "issue", "list_records", "lookup", "open_bucket", "put_key", "revoke"]


def identities_bucket(ns: Namespace) -> str:
    return f"{ns.prefix}_identities"


async def open_bucket(
    js: JetStreamContext, ns: Namespace, *, create: bool = False, replicas: int = 1
) -> KeyValue:
    """The identities bucket; with ``create``, made if missing (by whoever issues credentials)."""
    name = identities_bucket(ns)
    try:
        return await js.key_value(name)
    except nats.js.errors.BucketNotFoundError as exc:
        if not create:
            raise NotProvisioned(f"bucket {name} (issue a credential first: `mesh credentials ...`)") from exc
    except Exception as exc:
        raise translate_error(exc, f"open {name}") from exc
    config = KeyValueConfig(
        bucket=name,
        description="agent-mesh credentials: identity and sha256 of the secret, by credential id",
        history=4,
        storage=StorageType.FILE,
        replicas=replicas,
        max_value_size=16 * 1024,
        direct=True,
    )
    try:
        return await js.create_key_value(config)
    except Exception as exc:
        raise translate_error(exc, f"create {name}") from exc


async def issue(kv: KeyValue, identity: Identity, *, issued_by: str) -> tuple[CredentialRecord, str]:
    """Store a new credential for ``identity``; returns its record and the token (shown once).

    Its public audit signing key (derived from the secret, mesh/protocol/actorsig.py) goes in
    next to it as ``pub.<id>``, first: a credential is never in force without its key.
    """
    cred_id, secret, token = new_token()
    record = CredentialRecord(
        id=cred_id,
        identity=identity,
        secret_sha256=hash_secret(secret),
        issued_at=utcnow(),
        issued_by=issued_by,
    )
    await put_key(
        kv, ActorKey(id=cred_id, identity=identity, public_key=public_key(secret), issued_at=record.issued_at)
    )
    try:
        await kv.create(cred_id, encode(record))
    except Exception as exc:
        raise translate_error(exc, "issue a credential", subject=cred_id) from exc
    return record, token


async def put_key(kv: KeyValue, key: ActorKey) -> None:
    """Store ``key`` as ``pub.<id>``; never over an existing one (old events must keep verifying)."""
    name = actor_key_name(key.id)
    try:
        await kv.create(name, encode(key))
    except Exception as exc:
        raise translate_error(exc, "store a credential's public key", subject=name) from exc


async def lookup(kv: KeyValue, cred_id: str) -> CredentialRecord | None:
    """The record of ``cred_id``; ``None`` when there is none (never issued, or revoked)."""
    try:
        entry = await kv.get(cred_id)
    except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
        return None
    except Exception as exc:
        raise translate_error(exc, "look up a credential", subject=cred_id) from exc
    if entry.value is None or entry.operation in ("DEL", "PURGE"):
        return None
    return decode(CredentialRecord, entry.value)


async def revoke(kv: KeyValue, cred_id: str) -> bool:
    """Delete the record of ``cred_id``; False if there was none."""
    if await lookup(kv, cred_id) is None:
        return False
    try:
        await kv.delete(cred_id)
    except Exception as exc:
        raise translate_error(exc, "revoke a credential", subject=cred_id) from exc
    return True


async def list_records(kv: KeyValue) -> list[CredentialRecord]:
    try:
        keys = await kv.keys()
    except nats.js.errors.NoKeysError:
        return []
    except Exception as exc:
        raise translate_error(exc, "list credentials") from exc
    out: list[CredentialRecord] = []
    for key in keys:
        if key.startswith(ACTOR_KEY_PREFIX + "."):
            continue  # a public signing key, not a credential
        record = await lookup(kv, key)
        if record is not None:
            out.append(record)
    return sorted(out, key=lambda r: r.issued_at)

"""Readers' lookups of the public audit signing keys in the identities bucket (``pub.<id>``)."""

from __future__ import annotations

from dataclasses import dataclass, field

import nats.errors
import structlog

from mesh.errors import MalformedMessage
from mesh.protocol.actorsig import Verdict, classify
from mesh.protocol.codec import decode
from mesh.protocol.identity import ActorKey, actor_key_name
from mesh.protocol.kvwire import Reply, parse_direct_reply
from mesh.protocol.models import AuditEvent
from mesh.transport.connection import Connection
from mesh.transport.identity_store import identities_bucket

__all__ = ["KeyBook"]

log = structlog.get_logger("mesh.audit")
LOOKUP_TIMEOUT = 2.0


@dataclass
class KeyBook:
    """A reader's cache of public keys, looked up key by key (the subject names what is read)."""

    conn: Connection
    _keys: dict[str, ActorKey | None] = field(default_factory=dict)
    #: False once a lookup could not be made at all (no bucket, or not allowed): stop trying.
    readable: bool = True

    @property
    def bucket(self) -> str:
        return identities_bucket(self.conn.ns)

    async def get(self, cred: str) -> ActorKey | None:
        if cred in self._keys:
            return self._keys[cred]
        key = await self._lookup(cred) if self.readable else None
        if self.readable:
            self._keys[cred] = key
        return key

    async def _lookup(self, cred: str) -> ActorKey | None:
        bucket = self.bucket
        try:
            name = actor_key_name(cred)
        except Exception:  # the signature names no valid credential id: nothing to look up
            return None
        subject = f"$JS.API.DIRECT.GET.KV_{bucket}.$KV.{bucket}.{name}"
        try:
            msg = await self.conn.nc.request(subject, b"", timeout=LOOKUP_TIMEOUT)
        except (TimeoutError, nats.errors.TimeoutError, nats.errors.NoRespondersError) as exc:
            # No identities bucket (nats.conf, `mesh up`), or a reader not allowed to read keys
            # (its request is refused without an answer): signatures stay unchecked.
            log.info("audit signing keys unreadable: actors shown as claimed", error=type(exc).__name__)
            self.readable = False
            return None
        reply = parse_direct_reply(f"$KV.{bucket}.", msg.headers, msg.data)
        if reply.kind is Reply.EMPTY:
            return None
        if reply.kind is not Reply.ENTRY or reply.entry is None or reply.entry.value is None:
            if reply.kind is Reply.ENTRY:
                return None  # deleted: no key (keys are kept on revoke, so this one was removed)
            self.readable = False
            return None
        try:
            return decode(ActorKey, reply.entry.value)
        except MalformedMessage:
            return None

    async def classify(self, event: AuditEvent, subject: str) -> Verdict:
        """The verdict on ``event`` stored on ``subject`` (one lookup per credential, then cached)."""
        key = await self.get(event.sig.cred) if event.sig is not None else None
        return classify(event, subject, key, ns=self.conn.ns, key_readable=self.readable)

"""Audit actor signatures: a key derived from a credential's secret signs events; readers classify them."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from typing import TYPE_CHECKING

from mesh.errors import InvalidTarget
from mesh.protocol.identity import ActorKey, Role, parse_token
from mesh.protocol.models import ActorSig, AuditEvent
from mesh.protocol.permissions import may_publish, permissions_for
from mesh.protocol.subjects import Namespace
from mesh.protocol.target import AgentURI, Target, parse_agent_uri, parse_target

if TYPE_CHECKING:
    import nacl.signing

__all__ = [
    "DOMAIN",
    "SIGNED_FIELDS",
    "Signer",
    "Trust",
    "Verdict",
    "audit_subject_of",
    "classify",
    "content_hash",
    "public_key",
    "statement",
]

#: Domain separation of what is signed, and the version of the statement's form.
DOMAIN = b"mesh-actor-sig/1\n"
#: HKDF's ``info``: the signing seed is a key of its own, never the secret itself.
_KEY_INFO = b"mesh-actor-key/1"
#: The event fields scheme 1 signs (through their content hash). A named set, not "all but
#: chain and sig": a field a later version adds is then simply not covered, and an older reader
#: (which drops unknown fields) still verifies its events. ``chain`` is added at publish time,
#: after signing (the chain hashes the stored bytes, so it covers the signature).
SIGNED_FIELDS = frozenset(
    {
        "v",
        "id",
        "time",
        "type",
        "target",
        "agent_uri",
        "instance",
        "actor",
        "reason",
        "command_id",
        "revision",
        "data",
    }
)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _seed(secret: str) -> bytes:
    """HKDF-SHA256 (RFC 5869) of the token's secret: 32 bytes, an Ed25519 seed.

    The secret is 256 random bits, so no salt is needed for strength; deriving (rather than
    storing a second secret) means the token alone is what a holder keeps, and only it can sign.
    """
    prk = hmac.new(b"\x00" * 32, secret.encode(), hashlib.sha256).digest()
    return hmac.new(prk, _KEY_INFO + b"\x01", hashlib.sha256).digest()


@lru_cache(maxsize=16)
def _signing_key(secret: str) -> nacl.signing.SigningKey:
    import nacl.signing  # here, not at import: every connection imports this module (18 ms)

    return nacl.signing.SigningKey(_seed(secret))


def public_key(secret: str) -> str:
    """The public key (base64url) that verifies what the holder of ``secret`` signs."""
    return _b64(bytes(_signing_key(secret).verify_key))


def content_hash(event: AuditEvent) -> str:
    """sha256 of the signed fields as canonical JSON (sorted keys, no spaces).

    Through the wire encoding first (pydantic's JSON, parsed back), so that the writer, holding
    the event it built, and a reader, holding the event it decoded, hash the same values (a NaN,
    a tuple or an int key in ``data`` reach both as the JSON they became).
    """
    body = json.loads(event.model_dump_json(include=set(SIGNED_FIELDS)))
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def statement(event: AuditEvent, subject: str, cred: str) -> bytes:
    """The bytes signed: event id, subject, actor, credential id and content hash."""
    claims = {
        "id": event.id,
        "subject": subject,
        "actor": event.actor,
        "cred": cred,
        "content": content_hash(event),
    }
    return DOMAIN + json.dumps(claims, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True, slots=True)
class Signer:
    """What a writer holding a mesh token signs its audit events with."""

    cred: str
    secret: str = field(repr=False)  # never in a log line

    @classmethod
    def from_token(cls, token: str | None) -> Signer | None:
        """The signer of ``token``; ``None`` when there is none or it is not a mesh token."""
        parsed = parse_token(token) if token else None
        return cls(parsed[0], parsed[1]) if parsed else None

    def sign(self, event: AuditEvent, subject: str) -> AuditEvent:
        """``event`` with its signature, for publishing on ``subject``."""
        signed = _signing_key(self.secret).sign(statement(event, subject, self.cred)).signature
        return event.model_copy(update={"sig": ActorSig(cred=self.cred, sig=_b64(signed))})


class Trust(StrEnum):
    """What a reader may believe about an audit event's actor."""

    #: Signed by a credential whose identity is the actor (or, for an agent, the writer).
    VERIFIED = "verified"
    #: Not signed (shared users of nats.conf, `mesh up`, older writers), or its key is unreadable
    #: or not on record: the actor is what the writer said.
    CLAIMED = "claimed"
    #: Signed, but the signature is bad, or the credential is not who the event says.
    FORGED = "forged"


@dataclass(frozen=True, slots=True)
class Verdict:
    """A reader's finding on one event: its trust, who to show, and why."""

    trust: Trust
    #: Who to show: the credential's identity when verified, else the event's actor.
    who: str
    #: Why, in a few words (for forged and unchecked events).
    reason: str = ""
    cred: str | None = None


def _claimed_who(event: AuditEvent) -> str:
    if event.actor:
        return event.actor
    if event.agent_uri:
        return f"{event.agent_uri}#{event.instance}" if event.instance else event.agent_uri
    return "unknown"


def _verifies(key: ActorKey, sig: ActorSig, message: bytes) -> bool:
    import nacl.exceptions
    import nacl.signing

    try:
        nacl.signing.VerifyKey(_unb64(key.public_key)).verify(message, _unb64(sig.sig))
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, binascii.Error, ValueError):
        return False
    return True


def audit_subject_of(ns: Namespace, event: AuditEvent) -> str:
    """Where ``event`` belongs: under its instance's URI, or a command under its (maybe wildcard) target."""
    scope: Target | AgentURI
    if event.agent_uri:
        scope = parse_agent_uri(event.agent_uri)
    elif event.target:
        scope = parse_target(event.target)
    else:
        scope = Target("*", "*", "*")
    return ns.audit_subject(event.type.value, scope, event.instance)


def _identity_mismatch(event: AuditEvent, key: ActorKey) -> str:
    """Why the event is not one this credential's identity may write as itself; "" if it is."""
    ident = key.identity
    if ident.role is Role.AGENT:
        # An agent writes about itself; the actor of its acks is the kill's (copied from the record).
        if event.agent_uri is None or parse_agent_uri(event.agent_uri) != parse_agent_uri(ident.scope):
            return f"written by {ident.describe()}, about {event.agent_uri or 'no agent'}"
        if ident.instance is not None and event.instance != ident.instance:
            return f"written by {ident.describe()}, about instance {event.instance}"
        return ""
    if event.actor != ident.name:
        return f"names {event.actor!r}, but credential {key.id} is {ident.name!r}'s"
    return ""


def classify(
    event: AuditEvent,
    subject: str,
    key: ActorKey | None,
    *,
    ns: Namespace,
    key_readable: bool = True,
) -> Verdict:
    """Whether ``event``, stored on ``subject``, is verified, claimed or forged.

    ``key``: the public key record of the credential the signature names (``None``: there is
    none on record). ``key_readable`` False: the reader could not look keys up (a shared user of
    nats.conf, no identities bucket), so a signature cannot be checked and the actor stays claimed.
    Forged means someone lied: the signature does not match, or the credential that signed is not
    who the event says, or may not write where it is stored.
    """
    claimed = _claimed_who(event)
    sig = event.sig
    if sig is None:
        return Verdict(Trust.CLAIMED, claimed, "not signed")
    if sig.v != 1:
        # A later scheme: this reader cannot check it (a forger gains nothing over not signing).
        return Verdict(Trust.CLAIMED, claimed, f"signature scheme {sig.v} unknown to this reader", sig.cred)
    if not key_readable:
        return Verdict(Trust.CLAIMED, claimed, "signed, but the keys are unreadable", sig.cred)
    if key is None:
        # A credential issued before signing existed, or a made-up id: nothing to check against.
        return Verdict(Trust.CLAIMED, claimed, f"no key on record for credential {sig.cred}", sig.cred)
    if key.id != sig.cred:
        return Verdict(Trust.FORGED, claimed, f"key record {key.id} stored for {sig.cred}", sig.cred)
    if not _verifies(key, sig, statement(event, subject, sig.cred)):
        return Verdict(Trust.FORGED, claimed, f"bad signature for credential {sig.cred}", sig.cred)
    try:
        mismatch = _identity_mismatch(event, key)
        expected = audit_subject_of(ns, event)
    except InvalidTarget as exc:
        return Verdict(Trust.FORGED, claimed, f"signed, but names no valid agent ({exc})", sig.cred)
    if mismatch:
        return Verdict(Trust.FORGED, claimed, mismatch, sig.cred)
    if subject != expected:
        # Signed for this subject, but its type or agent says it belongs elsewhere.
        return Verdict(Trust.FORGED, claimed, f"stored on {subject}, its content says {expected}", sig.cred)
    if not may_publish(permissions_for(key.identity, key.id, ns), subject):
        # Signed for a subject its credential may not publish on: someone else stored it.
        return Verdict(Trust.FORGED, claimed, f"credential {key.id} may not write {subject}", sig.cred)
    return Verdict(Trust.VERIFIED, key.identity.actor, cred=sig.cred)

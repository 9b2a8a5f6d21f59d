"""The auth callout service: answers nats-server's authorization requests with scoped permissions."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import structlog

from controller.calloutkick import LiveConnections, kick_revoked
from controller.natsjwt import IssuerKey, authorization_response, decode_request, user_jwt
from mesh.errors import MeshError
from mesh.protocol.identity import CredentialRecord, parse_token, secret_matches
from mesh.protocol.permissions import permissions_for
from mesh.protocol.subjects import Namespace
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection
from mesh.transport.identity_store import lookup, open_bucket
from mesh.transport.natstypes import KeyValue, Msg

__all__ = ["AUTH_SUBJECT", "CalloutService", "Verdict", "decide"]

log = structlog.get_logger("controller.callout")

#: Where nats-server sends authorization requests (nats-server's AuthCalloutSubject).
AUTH_SUBJECT = "$SYS.REQ.USER.AUTH"
#: Replicas share the requests.
QUEUE = "mesh-callout"
#: The refusal every unknown, revoked or mistyped token gets: the server logs it, the client
#: sees "authorization violation". It never repeats what the client sent.
REFUSED = (
    "credential not recognised: issue one with `mesh credentials agent|operator` and pass it as NATS_TOKEN"
)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to answer: a record to admit, or the reason for refusing."""

    record: CredentialRecord | None
    reason: str = ""


def decide(token: str, record: CredentialRecord | None) -> Verdict:
    """Admit ``token`` if it is a mesh token whose secret matches the stored record (pure)."""
    parsed = parse_token(token)
    if parsed is None or record is None or record.id != parsed[0]:
        return Verdict(None, REFUSED)
    if not secret_matches(parsed[1], record):
        return Verdict(None, REFUSED)
    return Verdict(record)


@dataclass
class CalloutService:
    """``run()`` until cancelled: one subscription, each request answered within the auth timeout."""

    settings: Settings
    issuer: IssuerKey
    account: str = "MESH"
    ttl: int = 900
    #: Check the server's signature on each request. Off by default: only the server can publish
    #: on AUTH_SUBJECT (no user of nats-identity.conf may), and a forged request yields nothing,
    #: since the server accepts an answer only to its own pending request (its fresh user nkey,
    #: its server id). It costs an Ed25519 verify per connect, about a third of the callout's CPU.
    verify_requests: bool = False
    #: A system-account user: with it, revoking a credential also ends its live connections
    #: at once (calloutkick.py); without it, they end when their JWT expires (``ttl``).
    kick_settings: Settings | None = None
    live: LiveConnections = field(default_factory=LiveConnections)
    counts: Counter[str] = field(default_factory=Counter)
    conn: Connection | None = None
    _kv: KeyValue | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def ns(self) -> Namespace:
        return self.settings.namespace

    async def run(self) -> None:
        self.conn = await Connection.open(self.settings, name="mesh-callout")
        try:
            self._kv = await open_bucket(self.conn.js, self.ns)
            async with contextlib.AsyncExitStack() as stack:
                if self.kick_settings is not None:
                    system = await stack.enter_async_context(
                        Connection(self.kick_settings, name="mesh-callout-kick")
                    )
                    kicker = asyncio.ensure_future(kick_revoked(self._kv, system, self.live))
                    stack.callback(kicker.cancel)
                sub = await self.conn.nc.subscribe(AUTH_SUBJECT, queue=QUEUE, cb=self._on_request)
                await self.conn.nc.flush()
                log.info(
                    "auth callout ready",
                    account=self.account,
                    ttl=self.ttl,
                    issuer=self.issuer.public,
                    kicks_revoked=self.kick_settings is not None,
                )
                self.ready.set()
                try:
                    await asyncio.Event().wait()
                finally:
                    await sub.unsubscribe()
        finally:
            await self.conn.close()

    async def _on_request(self, msg: Msg) -> None:
        try:
            answer = await self.answer(msg.data)
        except Exception as exc:  # a bad request must never stop the service
            self.counts["malformed"] += 1
            log.warning("ignored a bad authorization request", error=str(exc), count=self.counts["malformed"])
            return
        if msg.reply:
            await msg.respond(answer)

    async def answer(self, data: bytes) -> bytes:
        """The signed response to one authorization request (``MalformedMessage`` if it is not one)."""
        claims = decode_request(data.decode(errors="replace"), verify=self.verify_requests)
        nats: dict[str, Any] = claims["nats"]
        user_nkey = str(nats.get("user_nkey", ""))
        server_id = str(nats.get("server_id", {}).get("id", ""))
        opts: dict[str, Any] = nats.get("connect_opts") or {}
        # The nats CLI's conventions: a token (NATS_TOKEN), or the token as the password.
        token = str(opts.get("auth_token") or opts.get("pass") or "")
        now = int(time.time())
        verdict = await self._verdict(token)
        if verdict.record is None:
            self.counts["refused"] += 1
            client = nats.get("client_info") or {}
            log.info("refused a connection", reason=verdict.reason, host=client.get("host"))
            return authorization_response(
                self.issuer, user_nkey=user_nkey, server_id=server_id, now=now, error=verdict.reason
            ).encode()
        record = verdict.record
        perms = permissions_for(record.identity, record.id, self.ns)
        jwt = user_jwt(
            self.issuer,
            user_nkey=user_nkey,
            account=self.account,
            name=f"{record.identity.actor} ({record.id})",
            permissions=perms.to_claims(),
            now=now,
            ttl=self.ttl,
        )
        self.counts["admitted"] += 1
        client_id = (nats.get("client_info") or {}).get("id")
        if isinstance(client_id, int):
            self.live.note(record.id, server_id, client_id)
        log.debug("admitted", credential=record.id, identity=record.identity.describe())
        response = authorization_response(
            self.issuer, user_nkey=user_nkey, server_id=server_id, now=now, jwt=jwt
        )
        return response.encode()

    async def _verdict(self, token: str) -> Verdict:
        parsed = parse_token(token)
        if parsed is None or self._kv is None:
            return decide(token, None)
        try:
            record = await lookup(self._kv, parsed[0])
        except MeshError as exc:
            self.counts["lookup_failed"] += 1
            log.warning("credential lookup failed", credential=parsed[0], error=str(exc))
            return Verdict(None, "the auth service could not read its credentials; try again")
        return decide(token, record)

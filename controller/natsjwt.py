"""NATS JWTs for the auth callout: decode the server's request, sign the user and the response (pure)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from typing import Any

import nacl.exceptions
import nacl.signing
import nkeys  # type: ignore[import-untyped]

from mesh.errors import ConfigError, MalformedMessage

__all__ = [
    "IssuerKey",
    "authorization_response",
    "decode_request",
    "new_account_seed",
    "user_jwt",
]

_HEADER = {"typ": "JWT", "alg": "ed25519-nkey"}
_BAD_SEED = "MESH_CALLOUT_SEED is not an account NKey seed (SA...): make a pair with `mesh credentials seed`"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_account_seed() -> str:
    """A fresh account NKey seed (``SA...``): the callout's issuer key."""
    return bytes(nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_ACCOUNT)).decode()


class IssuerKey:
    """The account key that signs what the callout answers (its public key is in the config)."""

    def __init__(self, seed: str) -> None:
        try:
            self._kp = nkeys.from_seed(seed.strip().encode())
            public = bytes(self._kp.public_key).decode()
        except (nkeys.NkeysError, binascii.Error, ValueError) as exc:
            raise ConfigError(_BAD_SEED) from exc
        if not public.startswith("A"):
            raise ConfigError(_BAD_SEED)
        self.public = public

    def sign(self, claims: dict[str, Any]) -> str:
        body = dict(claims)
        # jti: the hash of the claims, as nats-io/jwt computes it (the server does not check it).
        body.pop("jti", None)
        digest = hashlib.new("sha512_256", json.dumps(body, separators=(",", ":")).encode()).digest()
        body = {"jti": base64.b32encode(digest).rstrip(b"=").decode(), **body}
        signing_input = f"{_b64(json.dumps(_HEADER).encode())}.{_b64(json.dumps(body).encode())}"
        signature = self._kp.sign(signing_input.encode())
        return f"{signing_input}.{_b64(bytes(signature))}"


def _public_key_bytes(public: str) -> bytes:
    raw = base64.b32decode(public + "=" * (-len(public) % 8))
    if len(raw) != 35:
        raise MalformedMessage("authorization request", "issuer is not an NKey", len(public))
    return raw[1:33]


def decode_request(token: str, *, verify: bool = True) -> dict[str, Any]:
    """The claims of the server's authorization request; with ``verify``, its signature checked."""
    try:
        head, body, sig = token.strip().split(".")
        claims: dict[str, Any] = json.loads(_unb64(body))
        if verify:
            issuer = str(claims["iss"])
            nacl.signing.VerifyKey(_public_key_bytes(issuer)).verify(f"{head}.{body}".encode(), _unb64(sig))
        nats = claims["nats"]
    except (ValueError, KeyError, TypeError, binascii.Error, nacl.exceptions.BadSignatureError) as exc:
        raise MalformedMessage(
            "authorization request", f"not a signed NATS JWT: {type(exc).__name__}", len(token)
        ) from exc
    if not isinstance(nats, dict) or nats.get("type") != "authorization_request":
        raise MalformedMessage(
            "authorization request", "claims are not of type authorization_request", len(token)
        )
    return claims


def user_jwt(
    issuer: IssuerKey,
    *,
    user_nkey: str,
    account: str,
    name: str,
    permissions: dict[str, object],
    now: int,
    ttl: int,
) -> str:
    """A user JWT placing the connection in ``account`` with ``permissions``, valid ``ttl`` seconds."""
    claims = {
        "iat": now,
        "exp": now + ttl,
        "iss": issuer.public,
        "sub": user_nkey,
        "name": name,
        "aud": account,
        "nats": {**permissions, "subs": -1, "data": -1, "payload": -1, "type": "user", "version": 2},
    }
    return issuer.sign(claims)


def authorization_response(
    issuer: IssuerKey, *, user_nkey: str, server_id: str, now: int, jwt: str = "", error: str = ""
) -> str:
    """The signed answer to one request: a user JWT, or an error (the server then refuses)."""
    nats: dict[str, object] = {"type": "authorization_response", "version": 2}
    if jwt:
        nats["jwt"] = jwt
    if error:
        nats["error"] = error
    return issuer.sign({"iat": now, "iss": issuer.public, "sub": user_nkey, "aud": server_id, "nats": nats})

"""The callout's answers, decoded as nats-server would: admitted, refused, and bad requests survived."""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import nkeys  # type: ignore[import-untyped]
import pytest

from controller.callout import REFUSED, CalloutService, decide
from controller.natsjwt import IssuerKey, decode_request, new_account_seed
from mesh.errors import MalformedMessage
from mesh.protocol.identity import CredentialRecord, Identity, Role, hash_secret, new_token, parse_token
from mesh.protocol.models import utcnow
from mesh.runtime.settings import Settings

SERVER_ID = "NSERVERIDXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"
USER_NKEY = "UUSERNKEYXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"


def _server_key() -> IssuerKey:
    """A key that signs like a server would (an NKey seed of the server kind)."""
    seed = bytes(nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_SERVER)).decode()
    key = IssuerKey.__new__(IssuerKey)
    key._kp = nkeys.from_seed(seed.encode())
    key.public = bytes(key._kp.public_key).decode()
    return key


def _request(token: str, signer: IssuerKey | None = None) -> bytes:
    signer = signer or _server_key()
    claims = {
        "iss": signer.public,
        "sub": "issuer",
        "aud": "nats-authorization-request",
        "nats": {
            "type": "authorization_request",
            "version": 2,
            "server_id": {"id": SERVER_ID, "name": "n1"},
            "user_nkey": USER_NKEY,
            "client_info": {"host": "127.0.0.1"},
            "connect_opts": {"auth_token": token},
        },
    }
    return signer.sign(claims).encode()


def _claims(jwt: bytes | str) -> dict[str, Any]:
    body = (jwt.decode() if isinstance(jwt, bytes) else jwt).split(".")[1]
    parsed: dict[str, Any] = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return parsed


def _record(identity: Identity) -> tuple[CredentialRecord, str]:
    cred_id, secret, token = new_token()
    record = CredentialRecord(
        id=cred_id, identity=identity, secret_sha256=hash_secret(secret), issued_at=utcnow()
    )
    return record, token


def _service(verify: bool = False) -> CalloutService:
    return CalloutService(Settings(), IssuerKey(new_account_seed()), ttl=60, verify_requests=verify)


async def test_unknown_token_is_refused_for_this_server_and_user() -> None:
    service = _service()
    answer = _claims(await service.answer(_request("mesh1_0123456789abcdef_" + "x" * 43)))
    assert answer["aud"] == SERVER_ID and answer["sub"] == USER_NKEY
    assert answer["iss"] == service.issuer.public
    assert answer["nats"] == {"type": "authorization_response", "version": 2, "error": REFUSED}
    assert service.counts["refused"] == 1


def test_decide() -> None:
    record, token = _record(Identity(role=Role.AGENT, scope="agent://acme/prod/mailer"))
    assert decide(token, record).record == record
    _, other_token = _record(Identity(role=Role.AGENT, scope="agent://acme/prod/mailer"))
    assert decide(other_token, record).reason == REFUSED  # another id
    other_secret = (parse_token(other_token) or ("", ""))[1]
    forged = f"mesh1_{record.id}_{other_secret}"
    assert parse_token(forged) == (record.id, other_secret)
    assert decide(forged, record).reason == REFUSED  # right id, wrong secret
    assert decide("garbage", None).reason == REFUSED


async def test_bad_requests_are_counted_and_survived() -> None:
    service = _service(verify=True)

    class FakeMsg:
        reply = "inbox"
        data = b"not a jwt"

        async def respond(self, data: bytes) -> None:
            raise AssertionError("a bad request gets no answer")

    await service._on_request(FakeMsg())  # type: ignore[arg-type]
    assert service.counts["malformed"] == 1
    with pytest.raises(MalformedMessage):
        await service.answer(b"a.b.c")
    tampered = _request("x").decode().split(".")
    body = json.loads(base64.urlsafe_b64decode(tampered[1] + "=" * (-len(tampered[1]) % 4)))
    body["nats"]["user_nkey"] = "UOTHER"
    tampered[1] = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
    with pytest.raises(MalformedMessage, match="not a signed NATS JWT"):
        decode_request(".".join(tampered), verify=True)
    assert decode_request(_request("x").decode(), verify=True)["nats"]["user_nkey"] == USER_NKEY


def test_issuer_seed_errors_name_the_fix() -> None:
    for bad in ("", "SAnotaseed", bytes(nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)).decode()):
        with pytest.raises(Exception, match="mesh credentials seed"):
            IssuerKey(bad)

"""Audit actor signatures (pure): sign, encode, decode, classify as verified, claimed or forged."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from mesh.protocol.actorsig import Signer, Trust, Verdict, audit_subject_of, classify, public_key
from mesh.protocol.codec import decode, encode
from mesh.protocol.identity import ActorKey, Identity, Role, new_token
from mesh.protocol.models import ActorSig, AuditEvent, ChainLink, EventType
from mesh.protocol.subjects import Namespace

NS = Namespace()
ISSUED = datetime(2026, 12, 1, tzinfo=UTC)


def _credential(identity: Identity) -> tuple[Signer, ActorKey]:
    cred_id, secret, token = new_token()
    signer = Signer.from_token(token)
    assert signer is not None and signer.cred == cred_id
    return signer, ActorKey(id=cred_id, identity=identity, public_key=public_key(secret), issued_at=ISSUED)


ALICE = Identity(role=Role.OPERATOR, scope="agent://acme/*/*", name="alice")
MAILER = Identity(role=Role.AGENT, scope="agent://acme/prod/mailer", instance="i-1")


def _kill(actor: str = "alice", target: str = "agent://acme/prod/mailer") -> AuditEvent:
    return AuditEvent(
        type=EventType.KILL,
        target=target,
        actor=actor,
        reason="runaway",
        command_id="c" * 32,
        revision=7,
        data={"grace": 10.0, "keys": ["acme.prod.mailer"]},
    )


def _halted(uri: str = "agent://acme/prod/mailer", instance: str = "i-1") -> AuditEvent:
    return AuditEvent(
        type=EventType.HALTED,
        target="agent://acme/prod/mailer",
        agent_uri=uri,
        instance=instance,
        actor="alice",  # an ack copies the kill's actor: the writer is the agent
        command_id="c" * 32,
        revision=7,
        data={"status": "killed", "checkpoint_seq": 3},
    )


def _stored(signer: Signer, event: AuditEvent) -> tuple[str, AuditEvent]:
    """What a reader gets back: signed for its subject, chained at publish, encoded, decoded."""
    subject = audit_subject_of(NS, event)
    signed = signer.sign(event, subject)
    chained = signed.model_copy(update={"chain": ChainLink(id="w1", seq=1)})
    return subject, decode(AuditEvent, encode(chained))


def _verdict(event: AuditEvent, subject: str, key: ActorKey | None, **kw: bool) -> Verdict:
    return classify(event, subject, key, ns=NS, **kw)


def test_an_operators_signed_kill_reads_back_verified_as_the_credentials_identity() -> None:
    signer, key = _credential(ALICE)
    subject, stored = _stored(signer, _kill())
    assert stored.sig is not None and stored.sig.cred == key.id
    verdict = _verdict(stored, subject, key)
    assert (verdict.trust, verdict.who, verdict.cred) == (Trust.VERIFIED, "alice", key.id)


def test_an_agents_signed_ack_is_verified_as_the_agent_not_the_kills_actor() -> None:
    signer, key = _credential(MAILER)
    subject, stored = _stored(signer, _halted())
    verdict = _verdict(stored, subject, key)
    assert (verdict.trust, verdict.who) == (Trust.VERIFIED, "agent://acme/prod/mailer#i-1")


def test_data_that_json_changes_still_verifies() -> None:
    # NaN becomes null on the wire, an int key a string: writer and reader must hash the same.
    signer, key = _credential(ALICE)
    event = _kill().model_copy(update={"data": {"ratio": float("nan"), "nested": {1: (1, 2)}}})
    subject, stored = _stored(signer, event)
    assert stored.data == {"ratio": None, "nested": {"1": [1, 2]}}
    assert _verdict(stored, subject, key).trust is Trust.VERIFIED


def test_a_field_a_later_version_adds_is_not_covered_and_does_not_break_verification() -> None:
    signer, key = _credential(ALICE)
    subject, stored = _stored(signer, _kill())
    doc = json.loads(encode(stored))
    doc["added_later"] = {"x": 1}  # an older reader drops it when decoding
    assert _verdict(decode(AuditEvent, json.dumps(doc).encode()), subject, key).trust is Trust.VERIFIED


@pytest.mark.parametrize(
    "change",
    [
        {"actor": "mallory"},
        {"reason": "routine"},
        {"data": {"grace": 0.0, "keys": ["acme.prod.mailer"]}},
        {"target": "agent://acme/prod/other"},
        {"revision": 8},
        {"id": "f" * 32},
        {"time": datetime(2020, 1, 1, tzinfo=UTC)},
    ],
    ids=lambda change: next(iter(change)),
)
def test_a_tampered_signed_event_is_forged(change: dict[str, object]) -> None:
    signer, key = _credential(ALICE)
    subject, stored = _stored(signer, _kill())
    tampered = stored.model_copy(update=change)
    verdict = _verdict(tampered, subject, key)
    assert verdict.trust is Trust.FORGED
    assert "bad signature" in verdict.reason


def test_a_signed_event_moved_to_another_subject_is_forged() -> None:
    signer, key = _credential(ALICE)
    subject, stored = _stored(signer, _kill())
    moved = subject.replace(".mailer.", ".other.")
    assert moved != subject
    assert _verdict(stored, moved, key).trust is Trust.FORGED


def test_a_valid_signature_over_another_actor_name_is_forged() -> None:
    # Alice's own credential, signing honestly over the name "bob": she may sign only as herself.
    signer, key = _credential(ALICE)
    subject, stored = _stored(signer, _kill(actor="bob"))
    verdict = _verdict(stored, subject, key)
    assert verdict.trust is Trust.FORGED
    assert "'bob'" in verdict.reason and "'alice'" in verdict.reason
    assert verdict.who == "bob"  # what it claimed, never promoted to a verified name


def test_an_agent_signing_about_another_agent_or_instance_is_forged() -> None:
    signer, key = _credential(MAILER)
    for event in (_halted(uri="agent://acme/prod/billing"), _halted(instance="i-2")):
        subject, stored = _stored(signer, event)
        assert _verdict(stored, subject, key).trust is Trust.FORGED


def test_a_signature_checked_against_another_credentials_key_is_forged() -> None:
    signer, _ = _credential(ALICE)
    _, bobs_key = _credential(Identity(role=Role.OPERATOR, scope="agent://acme/*/*", name="alice"))
    subject, stored = _stored(signer, _kill())
    assert stored.sig is not None
    # The signature names alice's credential, but bob's key is what the reader found under it ...
    stored_as_bob = stored.model_copy(update={"sig": ActorSig(cred=bobs_key.id, sig=stored.sig.sig)})
    assert _verdict(stored_as_bob, subject, bobs_key).trust is Trust.FORGED
    # ... or a key record stored under the wrong name.
    assert _verdict(stored, subject, bobs_key).trust is Trust.FORGED


def test_unsigned_events_are_claimed() -> None:
    _, key = _credential(ALICE)
    event = decode(AuditEvent, encode(_kill()))
    verdict = _verdict(event, audit_subject_of(NS, event), key)
    assert (verdict.trust, verdict.who, verdict.reason) == (Trust.CLAIMED, "alice", "not signed")


def test_a_signature_whose_key_is_unreadable_or_not_on_record_is_claimed() -> None:
    signer, key = _credential(ALICE)
    subject, stored = _stored(signer, _kill())
    assert _verdict(stored, subject, None, key_readable=False).trust is Trust.CLAIMED
    assert _verdict(stored, subject, key, key_readable=False).trust is Trust.CLAIMED
    no_key = _verdict(stored, subject, None)
    assert no_key.trust is Trust.CLAIMED and "no key on record" in no_key.reason


def test_a_signature_scheme_unknown_to_the_reader_is_claimed() -> None:
    signer, key = _credential(ALICE)
    subject, stored = _stored(signer, _kill())
    assert stored.sig is not None
    later = stored.model_copy(update={"sig": stored.sig.model_copy(update={"v": 2})})
    assert _verdict(later, subject, key).trust is Trust.CLAIMED


def test_a_valid_signature_on_a_subject_the_credential_may_not_publish_is_forged() -> None:
    # Alice (scoped to acme) signs a kill of globex for its own subject; the server refuses her
    # publish there, so only someone else (a global operator, say) could have stored it.
    signer, key = _credential(ALICE)
    subject, stored = _stored(signer, _kill(target="agent://globex/prod/mailer"))
    verdict = _verdict(stored, subject, key)
    assert verdict.trust is Trust.FORGED
    assert "may not write" in verdict.reason


def test_an_event_whose_type_contradicts_its_subject_is_forged() -> None:
    # The agent may publish on its `halted` subject; the event there says it is a kill.
    signer, key = _credential(MAILER)
    halted = _halted()
    subject = audit_subject_of(NS, halted)
    kill_body = halted.model_copy(update={"type": EventType.KILL})
    stored = decode(AuditEvent, encode(signer.sign(kill_body, subject)))
    verdict = _verdict(stored, subject, key)
    assert verdict.trust is Trust.FORGED and "content says" in verdict.reason


def test_the_signer_never_shows_its_secret() -> None:
    _, secret, token = new_token()
    signer = Signer.from_token(token)
    assert signer is not None
    assert secret not in repr(signer) and secret not in str(signer)
    assert Signer.from_token("not-a-mesh-token") is None
    assert Signer.from_token(None) is None

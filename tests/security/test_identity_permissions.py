"""The pure identity -> permissions function, checked exhaustively against an independent oracle."""

from __future__ import annotations

from collections.abc import Callable
from itertools import product

import pytest

from mesh.errors import InvalidTarget
from mesh.protocol.identity import (
    CredentialRecord,
    Identity,
    Role,
    hash_secret,
    inbox_prefix,
    new_token,
    parse_token,
    secret_matches,
)
from mesh.protocol.permissions import (
    AGENT_EVENTS,
    may_publish,
    may_subscribe,
    permissions_for,
    subject_matches,
)
from mesh.protocol.subjects import Namespace

ORGS = ("acme", "globex", "_")
ENVS = ("prod", "dev", "_")
NAMES = ("mailer", "biller", "_")
INSTANCES = ("i1", "i2")
EVENTS = (*AGENT_EVENTS, "kill", "resume", "gateway_refused")
CRED = "0123456789abcdef"
OTHER = "fedcba9876543210"
NS = Namespace()


def agent(uri: str, instance: str | None = None) -> Identity:
    return Identity(role=Role.AGENT, scope=uri, instance=instance)


def person(role: Role, scope: str) -> Identity:
    return Identity(role=role, scope=scope, name="alice@example.com")


def triples() -> list[tuple[str, str, str]]:
    return list(product(ORGS, ENVS, NAMES))


def keys() -> list[tuple[str, ...]]:
    """Every control key shape: 3 segments, or 3 concrete segments and an instance."""
    out: list[tuple[str, ...]] = list(triples())
    out += [(o, e, n, i) for o, e, n in product(ORGS[:2], ENVS[:2], NAMES[:2]) for i in INSTANCES]
    return out


AGENTS = [
    agent("agent://acme/prod/mailer"),
    agent("agent://acme/prod/mailer", "i1"),
    agent("agent://globex/dev/biller", "i2"),
]


def _own(ident: Identity, o: str, e: str, n: str, i: str) -> bool:
    return (o, e, n) == ident.segments and (ident.instance is None or ident.instance == i)


def _record_can_match(ident: Identity, key: tuple[str, ...]) -> bool:
    if len(key) == 4:
        return _own(ident, *key)
    return all(k in (mine, "_") for k, mine in zip(key, ident.segments, strict=True))


@pytest.mark.parametrize("ident", AGENTS, ids=lambda i: i.actor)
def test_agent_publishes_only_as_itself(ident: Identity) -> None:
    perms = permissions_for(ident, CRED, NS)
    for (o, e, n), i in product(triples(), (*INSTANCES, "_")):
        own = _own(ident, o, e, n, i)
        tail = f"{o}.{e}.{n}.{i}"
        assert may_publish(perms, f"mesh.hb.{tail}") is own, tail
        assert may_publish(perms, f"mesh.quota.{tail}") is own, tail
        assert may_publish(perms, f"$KV.mesh_checkpoints.{tail}") is own, tail
        get = f"$JS.API.DIRECT.GET.KV_mesh_checkpoints.$KV.mesh_checkpoints.{tail}"
        assert may_publish(perms, get) is own, tail
        for event in EVENTS:
            expected = own and event in AGENT_EVENTS
            assert may_publish(perms, f"mesh.audit.{tail}.{event}") is expected, (tail, event)
        # never: status, kill records, other services' subjects
        assert not may_publish(perms, f"$KV.mesh_instances.{tail}")
        assert not may_publish(perms, f"$KV.mesh_control.{tail}")
        assert not may_subscribe(perms, f"mesh.hb.{tail}")
        assert not may_subscribe(perms, f"mesh.audit.{tail}.halted")


@pytest.mark.parametrize("ident", AGENTS, ids=lambda i: i.actor)
def test_agent_reads_only_the_kill_records_that_can_match_it(ident: Identity) -> None:
    perms = permissions_for(ident, CRED, NS)
    readable = 0
    for key in keys():
        k = ".".join(key)
        expected = _record_can_match(ident, key)
        readable += expected
        get = f"$JS.API.DIRECT.GET.KV_mesh_control.$KV.mesh_control.{k}"
        assert may_publish(perms, get) is expected, k
        assert may_subscribe(perms, f"mesh.ctl.{k}") is expected, k
        assert not may_publish(perms, f"$KV.mesh_control.{k}"), k  # it can never kill or resume
    assert readable == 8 + (1 if ident.instance else 2)  # the 8 patterns and its own instance keys
    # the multi-get (keys in the body) and wildcard subscriptions are refused
    assert not may_publish(perms, "$JS.API.DIRECT.GET.KV_mesh_control")
    assert not may_subscribe(perms, "mesh.ctl.>")
    assert not may_subscribe(perms, f"mesh.ctl.{'.'.join(ident.segments)}.>")


@pytest.mark.parametrize("ident", [*AGENTS, person(Role.OPERATOR, "agent://acme/*/*")], ids=str)
def test_replies_only_on_its_own_inbox(ident: Identity) -> None:
    perms = permissions_for(ident, CRED, NS)
    assert may_subscribe(perms, f"{inbox_prefix(CRED)}.abc.1")
    assert may_subscribe(perms, f"{inbox_prefix(CRED)}.>")
    assert not may_subscribe(perms, f"{inbox_prefix(OTHER)}.abc.1")
    assert not may_subscribe(perms, "_INBOX.abc")
    assert not may_subscribe(perms, ">")


def test_agent_consumers_and_stream_apis_are_refused() -> None:
    perms = permissions_for(AGENTS[0], CRED, NS)
    for subject in (
        "$JS.API.CONSUMER.CREATE.KV_mesh_control",
        "$JS.API.CONSUMER.CREATE.KV_mesh_control.x.$KV.mesh_control.acme.prod.mailer",
        "$JS.API.STREAM.CREATE.MESH_AUDIT",
        "$JS.API.STREAM.PURGE.MESH_AUDIT",
        "$JS.API.STREAM.INFO.MESH_AUDIT",
        "$JS.API.DIRECT.GET.MESH_AUDIT",
        "$SRV.PING",
        "mesh.controller.status",
    ):
        assert not may_publish(perms, subject), subject
    assert may_publish(perms, "$JS.API.STREAM.INFO.KV_mesh_control")


SCOPES: dict[str, Callable[[str, str, str], bool]] = {
    "agent://acme/*/*": lambda o, e, n: o == "acme",
    "agent://acme/prod/*": lambda o, e, n: (o, e) == ("acme", "prod"),
    "agent://acme/prod/mailer": lambda o, e, n: (o, e, n) == ("acme", "prod", "mailer"),
}


@pytest.mark.parametrize("scope", sorted(SCOPES))
def test_operator_acts_and_reads_only_inside_its_scope(scope: str) -> None:
    inside = SCOPES[scope]
    perms = permissions_for(person(Role.OPERATOR, scope), CRED, NS)
    for key in keys():
        k = ".".join(key)
        expected = inside(*key[:3])
        assert may_publish(perms, f"$KV.mesh_control.{k}") is expected, k  # kill / resume
        get = f"$JS.API.DIRECT.GET.KV_mesh_control.$KV.mesh_control.{k}"
        assert may_publish(perms, get) is expected, k
        assert may_subscribe(perms, f"mesh.ctl.{k}") is expected, k
    for (o, e, n), i in product(triples(), INSTANCES):
        expected = inside(o, e, n)
        tail = f"{o}.{e}.{n}.{i}"
        for event in EVENTS:
            may = expected and event in ("kill", "resume")
            assert may_publish(perms, f"mesh.audit.{tail}.{event}") is may, (tail, event)
            assert may_subscribe(perms, f"mesh.audit.{tail}.{event}") is expected, (tail, event)
        assert may_subscribe(perms, f"mesh.hb.{tail}") is expected
        for bucket in ("instances", "checkpoints"):
            get = f"$JS.API.DIRECT.GET.KV_mesh_{bucket}.$KV.mesh_{bucket}.{tail}"
            assert may_publish(perms, get) is expected, get
            assert not may_publish(perms, f"$KV.mesh_{bucket}.{tail}")  # never writes status/checkpoints
        assert not may_publish(perms, f"mesh.hb.{tail}")
        audit_consumer = f"$JS.API.CONSUMER.CREATE.MESH_AUDIT.{CRED}.mesh.audit.{tail}.halted"
        assert may_publish(perms, audit_consumer) is expected
    # everything, or another org: refused; the unscoped read forms too
    assert not may_publish(perms, "$KV.mesh_control._._._")
    assert not may_subscribe(perms, "mesh.audit.>")
    assert not may_publish(perms, "$JS.API.DIRECT.GET.KV_mesh_instances")
    assert not may_publish(perms, "$JS.API.CONSUMER.CREATE.MESH_AUDIT")
    assert not may_publish(perms, "$SRV.INFO.mesh-controller")
    assert not may_publish(perms, "$KV.mesh_policies.p1")


def test_scoped_consumers_are_named_after_the_credential() -> None:
    perms = permissions_for(person(Role.OPERATOR, "agent://acme/*/*"), CRED, NS)
    scoped = "mesh.audit.acme.*.*.*.*"
    assert may_publish(perms, f"$JS.API.CONSUMER.CREATE.MESH_AUDIT.{CRED}.{scoped}")
    assert not may_publish(perms, f"$JS.API.CONSUMER.CREATE.MESH_AUDIT.controller.{scoped}")
    assert may_publish(perms, f"$JS.API.CONSUMER.MSG.NEXT.MESH_AUDIT.{CRED}")
    assert not may_publish(perms, "$JS.API.CONSUMER.MSG.NEXT.MESH_AUDIT.controller")
    assert may_publish(perms, f"$JS.ACK.MESH_AUDIT.{CRED}.1.2.3.4.5")
    assert not may_publish(perms, "$JS.ACK.MESH_AUDIT.controller.1.2.3.4.5")
    # a wider filter than the scope, in a consumer of its own name
    assert not may_publish(perms, f"$JS.API.CONSUMER.CREATE.MESH_AUDIT.{CRED}.mesh.audit.>")


def test_auditor_reads_only_its_scope_and_writes_nothing() -> None:
    perms = permissions_for(person(Role.AUDITOR, "agent://acme/*/*"), CRED, NS)
    for (o, e, n), i, event in product(triples(), INSTANCES, EVENTS):
        subject = f"mesh.audit.{o}.{e}.{n}.{i}.{event}"
        assert may_subscribe(perms, subject) is (o == "acme"), subject
        assert may_publish(perms, f"$JS.API.DIRECT.GET.MESH_AUDIT.{subject}") is (o == "acme")
        assert not may_publish(perms, subject)
        assert not may_publish(perms, f"$KV.mesh_control.{o}.{e}.{n}")
    assert not may_subscribe(perms, "mesh.hb.acme.prod.mailer.i1")


def test_global_people_keep_the_shared_roles_rights() -> None:
    op = permissions_for(person(Role.OPERATOR, "agent://*/*/*"), CRED, NS)
    assert may_publish(op, "$KV.mesh_control._._._")
    assert may_publish(op, "$KV.mesh_control.globex.dev.biller")
    assert may_publish(op, "$JS.API.DIRECT.GET.KV_mesh_instances")  # `mesh list`'s multi-get
    assert may_publish(op, "$SRV.INFO.mesh-controller")
    assert not may_publish(op, "$KV.mesh_checkpoints.acme.prod.mailer.i1")
    assert not may_publish(op, "mesh.audit.acme.prod.mailer.i1.halted")
    assert not may_publish(op, "$JS.API.STREAM.PURGE.MESH_AUDIT")
    aud = permissions_for(person(Role.AUDITOR, "agent://*/*/*"), CRED, NS)
    assert may_publish(aud, "$JS.API.CONSUMER.CREATE.MESH_AUDIT")  # `mesh audit verify` reads all
    assert may_subscribe(aud, "mesh.audit.>")
    assert not may_publish(aud, "mesh.audit.acme.prod.mailer.i1.kill")
    assert not may_publish(aud, "$KV.mesh_control.acme.prod.mailer")


def test_prefix_is_honoured() -> None:
    perms = permissions_for(agent("agent://acme/prod/mailer", "i1"), CRED, Namespace("corp"))
    assert may_publish(perms, "corp.hb.acme.prod.mailer.i1")
    assert not may_publish(perms, "mesh.hb.acme.prod.mailer.i1")
    assert may_publish(perms, "$KV.corp_checkpoints.acme.prod.mailer.i1")
    assert may_publish(perms, "$JS.API.DIRECT.GET.KV_corp_control.$KV.corp_control._.prod._")


def test_claims_shape() -> None:
    claims = permissions_for(AGENTS[1], CRED, NS).to_claims()
    assert set(claims) == {"pub", "sub"}
    assert "mesh.hb.acme.prod.mailer.i1" in claims["pub"]["allow"]  # type: ignore[index]
    assert "$JS.API.STREAM.PURGE.>" in claims["pub"]["deny"]  # type: ignore[index]
    assert claims["sub"]["allow"][0] == f"_INBOX_{CRED}.>"  # type: ignore[index]


@pytest.mark.parametrize(
    ("pattern", "subject", "expected"),
    [
        ("a.*.c", "a.b.c", True),
        ("a.*.c", "a.b.c.d", False),
        ("a.>", "a.b.c", True),
        ("a.>", "a", False),
        ("a.*", "a.>", False),
        ("a.*", "a.*", True),
        ("a.b", "a.*", False),
    ],
)
def test_subject_matching(pattern: str, subject: str, expected: bool) -> None:
    assert subject_matches(pattern, subject) is expected


@pytest.mark.parametrize(
    ("role", "scope", "name", "instance", "problem"),
    [
        (Role.AGENT, "agent://acme/*/mailer", "", None, "only allowed in kill/resume"),
        (Role.AGENT, "agent://acme/prod/mailer", "", "bad.inst", "contains '.'"),
        (Role.OPERATOR, "agent://*/prod/*", "alice", None, "wildcards only at the end"),
        (Role.OPERATOR, "agent://acme/*/mailer", "alice", None, "wildcards only at the end"),
        (Role.OPERATOR, "agent://acme/prod/mailer#i1", "alice", None, "not one instance"),
        (Role.OPERATOR, "agent://acme/*/*", "", None, "a person's name"),
        (Role.AUDITOR, "agent://acme/*/*", "al ice", None, "a person's name"),
        (Role.AUDITOR, "agent://acme/*/*", "alice", "i1", "only an agent credential"),
    ],
)
def test_bad_identities_are_refused_with_the_reason(
    role: Role, scope: str, name: str, instance: str | None, problem: str
) -> None:
    with pytest.raises((InvalidTarget, ValueError), match=problem):
        Identity(role=role, scope=scope, name=name, instance=instance)


def test_tokens() -> None:
    cred_id, secret, token = new_token()
    assert parse_token(token) == (cred_id, secret)
    assert parse_token(token + "x") is None
    assert parse_token("s3cret") is None
    assert parse_token(token.replace("mesh1", "mesh2")) is None
    record = CredentialRecord(
        id=cred_id, identity=AGENTS[0], secret_sha256=hash_secret(secret), issued_at="2026-01-01T00:00:00Z"
    )
    assert secret_matches(secret, record)
    assert not secret_matches(secret[:-1] + ("A" if secret[-1] != "A" else "B"), record)
    assert new_token()[0] != cred_id


def test_actor_names_the_identity() -> None:
    assert AGENTS[1].actor == "agent://acme/prod/mailer#i1"
    assert person(Role.OPERATOR, "agent://acme/*/*").actor == "alice@example.com"

"""Hostile input on every decoder of a listened subject: nothing may fail except with the one error
each promises (``MalformedMessage`` for payloads, ``InvalidTarget`` for names), and what does parse
must round-trip.

Kinds of input: random bytes, random JSON values, model-shaped JSON with wrong types, unknown
fields, oversized payloads, deeply nested JSON, invalid UTF-8, subject/body mismatches.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from nats.aio.msg import Msg
from pydantic import BaseModel

from mesh.errors import InvalidTarget, MalformedMessage, PayloadTooLarge
from mesh.protocol.codec import DEFAULT_MAX_PAYLOAD, decode, encode
from mesh.protocol.controlupdate import ControlUpdate
from mesh.protocol.models import AuditEvent, Checkpoint, HaltAck, Heartbeat, InstanceStatus, KillRecord
from mesh.protocol.subjects import Namespace, key_to_target, target_to_key
from mesh.protocol.target import parse_agent_uri, parse_target, validate_instance
from mesh.transport.control import parse_control_message

pytestmark = pytest.mark.timeout(300)

NS = Namespace("mesh")
MODELS: list[type[BaseModel]] = [KillRecord, Heartbeat, InstanceStatus, Checkpoint, AuditEvent, HaltAck]
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Names drawn from a small alphabet, so that valid, invalid and colliding names all come up.
NAME_CHARS = st.sampled_from([*list("ab0_-.*> é\t/#:"), "", "x" * 70])
names = st.lists(NAME_CHARS, min_size=0, max_size=6).map("".join)
json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=40)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


def model_fields(model: type[BaseModel]) -> list[str]:
    return list(model.model_fields)


@st.composite
def model_shaped(draw: st.DrawFn, model: type[BaseModel]) -> bytes:
    """A JSON object with the model's own field names (some), random values, and unknown fields."""
    fields = model_fields(model)
    chosen = draw(st.lists(st.sampled_from(fields), unique=True, max_size=len(fields)))
    body: dict[str, Any] = {f: draw(json_values) for f in chosen}
    body.update(draw(st.dictionaries(st.text(max_size=8), json_values, max_size=3)))
    return json.dumps(body, allow_nan=True).encode()


def assert_decodes_or_malformed(model: type[BaseModel], data: bytes) -> None:
    try:
        value = decode(model, data)
    except MalformedMessage as exc:
        problem = (exc.kind, exc.size)
        assert problem == (model.__name__, len(data))
        return
    # whatever decodes re-encodes and decodes to the same thing
    assert decode(model, encode(value)) == value


# -------------------------------------------------------------------------------------------
# mesh.protocol.codec.decode, every model
# -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
@FUZZ
@given(data=st.binary(max_size=512))
@example(data=b"")
@example(data=b"\xff\xfe\x00")
@example(data=b"null")
@example(data=b"[]")
@example(data=b'{"v": 1e999}')
@example(data=b'"\\ud800"')
def test_decode_random_bytes(model: type[BaseModel], data: bytes) -> None:
    assert_decodes_or_malformed(model, data)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
@FUZZ
@given(value=json_values)
def test_decode_random_json(model: type[BaseModel], value: Any) -> None:
    assert_decodes_or_malformed(model, json.dumps(value, allow_nan=True).encode())


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
@FUZZ
@given(st.data())
def test_decode_model_shaped_with_wrong_types_and_unknown_fields(
    model: type[BaseModel], data: st.DataObject
) -> None:
    assert_decodes_or_malformed(model, data.draw(model_shaped(model)))


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_decode_oversized_and_pathological(model: type[BaseModel]) -> None:
    rng = random.Random(7)
    with pytest.raises(PayloadTooLarge):
        decode(model, os.urandom(DEFAULT_MAX_PAYLOAD + 1))
    with pytest.raises(PayloadTooLarge):
        decode(model, b'{"v":1,' + b" " * DEFAULT_MAX_PAYLOAD + b"}")
    for depth in (1_000, 100_000):  # deep nesting must not blow the stack
        assert_decodes_or_malformed(model, b"[" * depth + b"]" * depth)
        assert_decodes_or_malformed(model, b'{"metadata":' * depth + b"1" + b"}" * depth)
    for size in (1, 7, 64, 4096, 65536, DEFAULT_MAX_PAYLOAD):
        assert_decodes_or_malformed(model, rng.randbytes(size))
    # huge numbers, long strings in length-limited fields
    assert_decodes_or_malformed(model, b'{"v": 1' + b"0" * 5000 + b"}")
    assert_decodes_or_malformed(model, json.dumps({f: "x" * 100_000 for f in model_fields(model)}).encode())


def test_unknown_fields_are_ignored_not_applied() -> None:
    hb = decode(Heartbeat, b'{"agent_uri":"agent://a/b/c","instance":"i","status":"active","is_admin":true}')
    assert not hasattr(hb, "is_admin")
    kill = decode(KillRecord, b'{"target":"agent://a/b/c","grace":1,"__class__":"x","v":1}')
    assert kill.grace == 1


def test_heartbeat_cannot_smuggle_out_of_range_values() -> None:
    for bad in (
        {"agent_uri": "agent://a/b/c", "instance": "i", "interval": 0},
        {"agent_uri": "agent://a/b/c", "instance": "i", "interval": -1},
        {"agent_uri": "agent://a/b/c", "instance": "i", "seq": -5},
        {"agent_uri": "agent://a/b/c", "instance": "i", "status": "superuser"},
        {"agent_uri": "agent://a/b/c", "instance": "i" * 65},
        {"agent_uri": "agent://a/b/c", "instance": "i", "on_kill": "ignore"},
    ):
        with pytest.raises(MalformedMessage):
            decode(Heartbeat, json.dumps(bad).encode())
    for bad_kill in (
        {"target": "t", "grace": -1},
        {"target": "t", "grace": 1e9},
        {"target": "t", "action": "ignore"},
    ):
        with pytest.raises(MalformedMessage):
            decode(KillRecord, json.dumps(bad_kill).encode())


# -------------------------------------------------------------------------------------------
# mesh.transport.control.parse_control_message (what every agent instance decodes from mesh.ctl.>)
# -------------------------------------------------------------------------------------------

header_names = st.sampled_from(
    ["Nats-Sequence", "KV-Operation", "Nats-Subject", "Nats-Stream", "X"]
) | st.text(max_size=12)
header_values = st.sampled_from(
    ["1", "0", "-3", "DEL", "PURGE", "PUT", "", "1e3", "99999999999999999999", " 7 "]
) | st.text(max_size=12)
control_subjects = st.sampled_from(["mesh.ctl.", "mesh.ctl", "mesh.", "other.ctl.", ""]).flatmap(
    lambda head: names.map(lambda tail: head + tail)
)
valid_record = encode(KillRecord(target="agent://acme/prod/mailer", reason="fuzz"))


@FUZZ
@given(
    subject=control_subjects,
    headers=st.none() | st.dictionaries(header_names, header_values, max_size=4),
    data=st.sampled_from([valid_record, b"", b"{}", b"null"]) | st.binary(max_size=256),
)
def test_parse_control_message(subject: str, headers: dict[str, str] | None, data: bytes) -> None:
    msg = Msg(_client=None, subject=subject, data=data, headers=headers)  # type: ignore[arg-type]
    try:
        update = parse_control_message(NS, msg)
    except MalformedMessage:
        return
    assert isinstance(update, ControlUpdate)
    assert subject == f"mesh.ctl.{update.key}"
    assert headers is not None and int(headers["Nats-Sequence"]) == update.revision
    if headers.get("KV-Operation") in ("DEL", "PURGE"):
        assert update.record is None
    else:
        assert update.record == decode(KillRecord, data)


def test_parse_control_message_without_sequence_is_refused() -> None:
    """A message that did not come from the server's republish (no Nats-Sequence) is never applied."""
    for headers in (None, {}, {"KV-Operation": "DEL"}, {"Nats-Sequence": "abc"}):
        msg = Msg(_client=None, subject="mesh.ctl.acme.prod.mailer", data=valid_record, headers=headers)  # type: ignore[arg-type]
        with pytest.raises(MalformedMessage):
            parse_control_message(NS, msg)


# -------------------------------------------------------------------------------------------
# names: heartbeat subjects, targets, URIs, instance ids, control keys
# -------------------------------------------------------------------------------------------

hb_subjects = st.lists(names, min_size=0, max_size=8).map(".".join) | st.lists(
    names, min_size=4, max_size=4
).map(lambda p: "mesh.hb." + ".".join(p))


@FUZZ
@given(subject=hb_subjects | st.text(max_size=80))
@example(subject="mesh.hb.acme.prod.mailer.i-1")
@example(subject="mesh.hb.acme.prod.mailer.>")
@example(subject="mesh.hb.*.prod.mailer.i")
@example(subject="mesh.hb.acme.prod.mailer.i.extra")
def test_parse_heartbeat_subject(subject: str) -> None:
    try:
        agent, instance = NS.parse_heartbeat_subject(subject)
    except InvalidTarget:
        return
    assert NS.heartbeat_subject(agent, instance) == subject


uris = st.sampled_from(["agent://", "agent:/", "AGENT://", "", "http://"]).flatmap(
    lambda scheme: st.lists(names, min_size=0, max_size=5).map(lambda p: scheme + "/".join(p))
)


@FUZZ
@given(value=uris | st.text(max_size=80), instance=st.none() | names)
@example(value="agent://*/*/*", instance=None)
@example(value="agent://acme/*/x", instance="i")
@example(value="agent://acme/prod/x#i#j", instance=None)
@example(value="agent://acme/prod/x#", instance=None)
def test_parse_target_and_uri(value: str, instance: str | None) -> None:
    try:
        target = parse_target(value, instance)
    except InvalidTarget:
        pass
    else:
        assert parse_target(str(target)) == target
        assert key_to_target(target_to_key(target)) == target
    try:
        agent = parse_agent_uri(value)
    except InvalidTarget:
        pass
    else:
        assert parse_agent_uri(str(agent)) == agent
    with contextlib.suppress(InvalidTarget):
        validate_instance(value)


@FUZZ
@given(key=st.lists(names, min_size=0, max_size=6).map(".".join) | st.text(max_size=60))
def test_key_to_target(key: str) -> None:
    try:
        target = key_to_target(key)
    except InvalidTarget:
        return
    assert target_to_key(target) == key


def test_non_string_names_are_refused() -> None:
    for bad in (None, 1, b"agent://a/b/c", ["agent://a/b/c"]):
        with pytest.raises(InvalidTarget):
            parse_target(bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidTarget):
            parse_agent_uri(bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidTarget):
            validate_instance(bad)  # type: ignore[arg-type]


# -------------------------------------------------------------------------------------------
# The other half of "decodes or is malformed": a valid model always decodes (a decoder that
# refused everything would pass every test above).
# -------------------------------------------------------------------------------------------

URIS = st.sampled_from(["agent://acme/prod/mailer", "agent://o/e/n", "agent://acme/*/*"])
INSTANCES = st.sampled_from(["i1", "us-east1-b", "w_0"])


@FUZZ
@given(
    uri=URIS.filter(lambda u: "*" not in u),
    instance=INSTANCES,
    seq=st.integers(0, 2**40),
    interval=st.floats(0.01, 3600, allow_nan=False),
    metadata=st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=20), max_size=4),
    usage=st.dictionaries(st.text(min_size=1, max_size=8), st.floats(0, 1e9, allow_nan=False), max_size=3),
)
def test_every_valid_heartbeat_decodes(
    uri: str, instance: str, seq: int, interval: float, metadata: dict[str, Any], usage: dict[str, float]
) -> None:
    hb = Heartbeat(
        agent_uri=uri, instance=instance, seq=seq, interval=interval, metadata=metadata, usage=usage
    )
    assert decode(Heartbeat, encode(hb)) == hb


@FUZZ
@given(
    target=URIS,
    instance=st.none() | INSTANCES,
    reason=st.none() | st.text(max_size=200),
    grace=st.floats(0, 86400, allow_nan=False),
    action=st.sampled_from([None, "raise", "pause"]),
)
def test_every_valid_kill_record_decodes(
    target: str, instance: str | None, reason: str | None, grace: float, action: Any
) -> None:
    record = KillRecord(
        target=target, instance=instance, actor="tester", reason=reason, grace=grace, action=action
    )
    assert decode(KillRecord, encode(record)) == record

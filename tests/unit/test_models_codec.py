"""Wire models and the codec: round trips, and one clear error for every kind of bad bytes."""

from __future__ import annotations

import json
import math

import pytest

from mesh.errors import InvalidCheckpoint, MalformedMessage, PayloadTooLarge
from mesh.protocol.codec import decode, encode, encode_state
from mesh.protocol.models import (
    AuditEvent,
    Checkpoint,
    EventType,
    HaltAck,
    Heartbeat,
    InstanceStatus,
    KillRecord,
    Status,
    utcnow,
)


def _models() -> list[object]:
    now = utcnow()
    return [
        Heartbeat(agent_uri="agent://a/b/c", instance="i", status=Status.PAUSED, metadata={"batch": 3}),
        KillRecord(target="agent://a/*/*", actor="alice", reason="broken template", grace=2.5),
        InstanceStatus(
            agent_uri="agent://a/b/c",
            instance="i",
            status=Status.STALE,
            first_seen=now,
            last_seen=now,
            last_change=now,
        ),
        Checkpoint(agent_uri="agent://a/b/c", instance="i", seq=4, state={"batch": 22}),
        AuditEvent(
            type=EventType.HALTED,
            agent_uri="agent://a/b/c",
            instance="i",
            revision=7,
            data=HaltAck(status="paused", metadata={"sent": 10}).model_dump(mode="json"),
        ),
    ]


@pytest.mark.parametrize("model", _models(), ids=lambda m: type(m).__name__)
def test_round_trip(model: object) -> None:
    from pydantic import BaseModel

    assert isinstance(model, BaseModel)
    assert decode(type(model), encode(model)) == model


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    raw = json.dumps({"target": "agent://a/b/c", "from_the_future": 1}).encode()
    assert decode(KillRecord, raw).target == "agent://a/b/c"


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "empty payload"),
        (b"{", "Invalid JSON"),
        (b"\xff\xfe", "Invalid JSON"),
        (b"[]", "message"),
        (b'{"agent_uri": 5, "instance": "i"}', "agent_uri"),
        (b'{"agent_uri": "agent://a/b/c", "instance": "i", "status": "zombie"}', "status"),
        (b'{"agent_uri": "agent://a/b/c", "instance": "i", "interval": -1}', "interval"),
    ],
)
def test_malformed_bytes_raise_one_error_type(data: bytes, fragment: str) -> None:
    with pytest.raises(MalformedMessage) as info:
        decode(Heartbeat, data)
    assert fragment in str(info.value)
    assert info.value.kind == "Heartbeat"
    assert info.value.size == len(data)


def test_oversized_payload() -> None:
    with pytest.raises(PayloadTooLarge) as info:
        decode(Heartbeat, b"x" * 2000, max_size=1000)
    assert info.value.size == 2000 and info.value.max_payload == 1000
    assert isinstance(info.value, MalformedMessage)


def test_encode_state_accepts_json() -> None:
    assert json.loads(encode_state({"batch": 3, "ids": [1, 2]})) == {"batch": 3, "ids": [1, 2]}


@pytest.mark.parametrize("bad", [{1, 2}, object(), {"x": math.nan}, b"bytes"])
def test_encode_state_refuses_non_json(bad: object) -> None:
    with pytest.raises(InvalidCheckpoint, match="not JSON-serialisable"):
        encode_state(bad)


def test_encode_state_refuses_oversized() -> None:
    with pytest.raises(InvalidCheckpoint) as info:
        encode_state("x" * 100, max_size=50)
    assert info.value.size == 102 and info.value.max_size == 50


def test_kill_record_defaults() -> None:
    record = KillRecord(target="agent://a/b/c")
    assert record.grace == 10.0
    assert record.action is None
    assert len(record.command_id) == 32
    assert record.issued_at.tzinfo is not None

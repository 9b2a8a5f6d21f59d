"""Report models, totals, JSON shapes, ``--since`` parsing and event matching: pure, no server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mesh import AuditEvent, ConfigError, EventType, KillRecord, KillReport, ResumeReport, parse_target
from mesh.protocol.reports import AckRow, HeldBy, SilentInstance, sum_metadata
from mesh.transport.eventlog import event_matches, parse_since

NOW = datetime(2025, 1, 31, 9, 0, 12, tzinfo=UTC)


def row(instance: str, **metadata: object) -> AckRow:
    return AckRow(agent_uri="agent://a/b/c", instance=instance, status="paused", metadata=metadata)


def test_totals_sum_numeric_metadata_only() -> None:
    rows = [row("a", batch=22, sent=2147, note="x", ok=True), row("b", sent=1893, cost=0.5), row("c")]
    assert sum_metadata(rows) == {"sent": 4040, "cost": 0.5}


def test_totals_leave_out_positions() -> None:
    rows = [row("a", batch=22, Step=3, offset=9, sent=1), row("b", batch=19, sent=2)]
    assert sum_metadata(rows) == {"sent": 3}


def test_kill_report_json_shape() -> None:
    report = KillReport(
        target="agent://a/b/c",
        command_id="c1",
        revision=7,
        actor="alice",
        issued_at=NOW,
        instances=[row("a", sent=1)],
        missing=[SilentInstance(agent_uri="agent://a/b/c", instance="z", status="active", last_seen=NOW)],
        expected=2,
    )
    shape = report.to_json()
    assert list(shape) == ["target", "command_id", "instances", "acked", "missing"]
    assert shape["acked"] == 1
    assert shape["instances"] == [
        {
            "agent_uri": "agent://a/b/c",
            "instance": "a",
            "status": "paused",
            "metadata": {"sent": 1},
            "checkpoint": None,
        }
    ]
    assert shape["missing"] == [
        {"agent_uri": "agent://a/b/c", "instance": "z", "status": "active", "last_seen": NOW.isoformat()}
    ]
    assert not report.complete


def test_resume_report_is_incomplete_while_another_record_holds() -> None:
    held = HeldBy(key="a._._", target="agent://a/*/*", revision=3, record=KillRecord(target="agent://a/*/*"))
    report = ResumeReport(
        target="agent://a/b/c", command_id="c2", revision=8, actor="bob", issued_at=NOW, still_held_by=[held]
    )
    assert not report.complete
    assert report.to_json()["still_held_by"][0]["target"] == "agent://a/*/*"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", NOW - timedelta(seconds=30)),
        ("15m", NOW - timedelta(minutes=15)),
        ("1h", NOW - timedelta(hours=1)),
        ("2d", NOW - timedelta(days=2)),
        ("2025-01-30T08:00", datetime(2025, 1, 30, 8, 0, tzinfo=UTC)),
        ("2025-01-30T08:00:00Z", datetime(2025, 1, 30, 8, 0, tzinfo=UTC)),
    ],
)
def test_parse_since(text: str, expected: datetime) -> None:
    assert parse_since(text, now=NOW) == expected


def test_parse_since_refuses_nonsense_with_the_fix() -> None:
    with pytest.raises(ConfigError, match="30s, 15m, 1h"):
        parse_since("yesterday")
    assert parse_since(None) is None
    assert parse_since(timedelta(hours=1), now=NOW) == NOW - timedelta(hours=1)


@pytest.mark.parametrize(
    ("pattern", "event", "expected"),
    [
        ("agent://a/b/c", AuditEvent(type=EventType.HALTED, agent_uri="agent://a/b/c", instance="i"), True),
        ("agent://a/b/c", AuditEvent(type=EventType.HALTED, agent_uri="agent://a/b/d", instance="i"), False),
        (
            "agent://a/b/c#i",
            AuditEvent(type=EventType.HALTED, agent_uri="agent://a/b/c", instance="j"),
            False,
        ),
        ("agent://a/b/c", AuditEvent(type=EventType.KILL, target="agent://a/*/*"), True),
        ("agent://a/b/c", AuditEvent(type=EventType.KILL, target="agent://z/*/*"), False),
        ("agent://*/*/*", AuditEvent(type=EventType.KILL, target="agent://z/y/x"), True),
        ("agent://a/*/*", AuditEvent(type=EventType.KILL, target="agent://a/b/c", instance="i"), True),
        ("agent://*/*/*", AuditEvent(type=EventType.POLICY_VIOLATION), True),
        ("agent://a/*/*", AuditEvent(type=EventType.POLICY_VIOLATION), False),
    ],
)
def test_event_matches(pattern: str, event: AuditEvent, expected: bool) -> None:
    assert event_matches(parse_target(pattern), event) is expected

"""The controller's pure state machine: transitions, coalescing, retention and event ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from controller.ingest import Ingest
from controller.state import Fleet, Policy, Transition, event_id
from controller.stats import Stats
from mesh.protocol.codec import encode
from mesh.protocol.models import AuditEvent, EventType, Heartbeat, Status
from mesh.protocol.subjects import Namespace

URI = "agent://acme/prod/mailer"
KEY = "acme.prod.mailer.i1"
T0 = 1_800_000_000.0


def hb(**kw: Any) -> Heartbeat:
    kw.setdefault("time", datetime.fromtimestamp(T0, UTC))
    kw.setdefault("interval", 2.0)
    return Heartbeat(agent_uri=URI, instance="i1", pid=42, **kw)


def lifecycle(kind: EventType, at: float, **kw: Any) -> AuditEvent:
    return AuditEvent(type=kind, agent_uri=URI, instance="i1", time=datetime.fromtimestamp(at, UTC), **kw)


def fleet(**kw: Any) -> Fleet:
    return Fleet(Policy(lost_after=30.0, stale_intervals=3.0, refresh_every=5.0, retention=3600.0, **kw))


def test_first_heartbeat_creates_an_active_record_to_write_at_once() -> None:
    f = fleet()
    t = f.heartbeat(KEY, hb(), T0)
    assert t is not None and t.old is None and t.new is Status.ACTIVE and t.event is None
    assert [e.key for e in f.due(T0, refresh=False)] == [KEY]
    assert f.due(T0, refresh=False) == []


def test_repeated_heartbeats_coalesce_into_refreshes() -> None:
    f = fleet()
    f.heartbeat(KEY, hb(), T0)
    f.due(T0, refresh=False)
    f.written(KEY, 1, T0, T0)
    for i in range(1, 40):
        assert f.heartbeat(KEY, hb(seq=i, metadata={"step": i}), T0 + i * 0.1) is None
    assert f.due(T0, refresh=False) == []  # nothing urgent
    assert f.due(T0 + 4.0, refresh=True) == []  # last write 4 s old < refresh_every
    f.heartbeat(KEY, hb(seq=99, interval=1.0), T0 + 4.0)  # a changed interval is written at once
    assert [e.key for e in f.due(T0, refresh=False)] == [KEY]


def test_refresh_waits_for_refresh_every() -> None:
    f = fleet()
    f.heartbeat(KEY, hb(), T0)
    f.due(T0, refresh=True)
    f.written(KEY, 1, T0, T0)
    f.heartbeat(KEY, hb(seq=1), T0 + 0.5)
    assert f.due(T0 + 4.0, refresh=True) == []
    assert [e.key for e in f.due(T0 + 5.0, refresh=True)] == [KEY]
    f.written(KEY, 2, T0 + 0.5, T0 + 5.0)
    assert f.due(T0 + 20.0, refresh=True) == []  # nothing heard since: nothing to refresh


def test_stale_then_lost_then_recovered() -> None:
    f = fleet()
    f.heartbeat(KEY, hb(), T0)
    f.written(KEY, 7, T0, T0)
    assert f.sweep(T0 + 5.9) == []
    (stale,) = f.sweep(T0 + 6.5)
    assert (stale.old, stale.new, stale.event) == (Status.ACTIVE, Status.STALE, EventType.STALE)
    assert f.sweep(T0 + 7.0) == []  # no repeat
    (lost,) = f.sweep(T0 + 31.0)
    assert (lost.old, lost.new, lost.event) == (Status.STALE, Status.LOST, EventType.LOST)
    assert f.sweep(T0 + 32.0) == []
    rec = f.heartbeat(KEY, hb(seq=9), T0 + 40.0)
    assert rec is not None and (rec.old, rec.new, rec.event) == (
        Status.LOST,
        Status.ACTIVE,
        EventType.RECOVERED,
    )
    assert rec.last_seen == T0  # the silence it recovered from


def test_reported_statuses_change_without_controller_events() -> None:
    f = fleet()
    f.heartbeat(KEY, hb(), T0)
    for status in (Status.PAUSED, Status.ACTIVE, Status.KILLED):
        t = f.heartbeat(KEY, hb(status=status), T0 + 1)
        assert t is not None and t.new is status and t.event is None
    assert f.sweep(T0 + 100) == []  # killed is not swept into stale/lost


def test_lifecycle_events_drive_the_status_and_late_heartbeats_do_not_revive() -> None:
    f = fleet()
    f.heartbeat(KEY, hb(), T0)
    t = f.lifecycle(KEY, lifecycle(EventType.HALTED, T0 + 1, data={"status": "paused"}), T0 + 1)
    assert t is not None and t.new is Status.PAUSED
    t = f.lifecycle(KEY, lifecycle(EventType.STOPPED, T0 + 2), T0 + 2)
    assert t is not None and t.new is Status.STOPPED
    late = hb(time=datetime.fromtimestamp(T0 + 1.5, UTC))
    assert f.heartbeat(KEY, late, T0 + 3) is None
    assert f.entries[KEY].status is Status.STOPPED
    # a new incarnation (another pid) is active again
    reborn = Heartbeat(agent_uri=URI, instance="i1", pid=43, time=datetime.fromtimestamp(T0, UTC))
    t = f.heartbeat(KEY, reborn, T0 + 4)
    assert t is not None and t.new is Status.ACTIVE


def test_lifecycle_for_unknown_instance_and_stale_events_ignored() -> None:
    f = fleet()
    t = f.lifecycle(KEY, lifecycle(EventType.CRASHED, T0), T0 + 1)
    assert t is not None and t.new is Status.CRASHED
    assert f.lifecycle(KEY, lifecycle(EventType.STARTED, T0 - 10), T0 + 2) is None


def test_retention_expires_records() -> None:
    f = fleet()
    f.heartbeat(KEY, hb(), T0)
    f.sweep(T0 + 3601)
    assert KEY not in f.entries
    assert f.take_expired() == [KEY]


def test_event_ids_are_deterministic_across_a_restore() -> None:
    f = fleet()
    f.heartbeat(KEY, hb(), T0)
    f.written(KEY, 11, T0, T0)
    (stale,) = f.sweep(T0 + 7)
    first = event_id(KEY, EventType.STALE, f.event_basis(stale))
    # a second controller restores the same (pre-transition) record and re-detects
    g = fleet()
    rec = f.entries[KEY].record().model_copy(update={"status": Status.ACTIVE})
    g.restore(KEY, rec, 11)
    (again,) = g.sweep(T0 + 8)
    assert event_id(KEY, EventType.STALE, g.event_basis(again)) == first
    f.published(KEY)
    assert event_id(KEY, EventType.STALE, f.event_basis(stale)) != first


def test_audit_event_of_a_transition() -> None:
    t = Transition(KEY, URI, "i1", Status.ACTIVE, Status.STALE, T0 + 7, "quiet", T0, EventType.STALE)
    ev = t.audit_event("mesh-controller", "abc")
    assert ev.id == "abc" and ev.type is EventType.STALE and ev.data["to"] == "stale"
    assert ev.time - datetime.fromtimestamp(T0, UTC) == timedelta(seconds=7)


def test_ingest_counts_bad_heartbeats_by_reason() -> None:
    ns = Namespace("mesh")
    f, stats, seen = fleet(), Stats(), list[Transition]()
    ing = Ingest(ns, f, stats, seen.append, max_bytes=2048)
    subject = "mesh.hb.acme.prod.mailer.i1"
    ing.handle(subject, b"{not json")
    ing.handle(subject, b'{"agent_uri": 5}')
    ing.handle(subject, b"x" * 4096)
    ing.handle("mesh.hb.acme.prod.other.i1", encode(hb()))
    ing.handle(subject, encode(hb(v=2)))
    ing.handle(subject, encode(hb(status=Status.LOST)))
    assert dict(stats.bad) == {
        "malformed_json": 1,
        "invalid_fields": 2,
        "oversized": 1,
        "subject_mismatch": 1,
        "unknown_version": 1,
    }
    ing.handle(subject, encode(hb()))
    assert stats.heartbeats == 1 and len(seen) == 1 and KEY in f.entries

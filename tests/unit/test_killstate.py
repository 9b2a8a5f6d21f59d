"""The instance's view of kill records: revision order, and distrust of pushes the KV contradicts."""

from __future__ import annotations

from agent_sdk.killstate import KillState
from mesh.protocol.controlupdate import ControlUpdate
from mesh.protocol.models import KillRecord

KEYS = ["a.b.c", "_._._"]
REC = KillRecord(target="agent://a/b/c")


def test_newer_revisions_win_in_any_order() -> None:
    s = KillState(KEYS)
    assert s.apply([ControlUpdate("a.b.c", 5, REC)])
    assert not s.apply([ControlUpdate("a.b.c", 4, None)])  # older clear: ignored
    assert s and s.revision("a.b.c") == 5
    assert s.apply([ControlUpdate("a.b.c", 6, None)])
    assert not s
    assert not s.apply([ControlUpdate("x.y.z", 9, REC)])  # not one of our keys


def test_kv_reads_overrule_a_pushed_revision_they_keep_contradicting_with_a_record() -> None:
    s = KillState(KEYS)
    s.apply([ControlUpdate("a.b.c", 1_000_000, REC)])  # pushed, suspiciously high
    older = KillRecord(target="agent://a/b/c", reason="the KV's own record")
    assert not s.apply([ControlUpdate("a.b.c", 3, older)], from_kv=True)  # one read: could lag
    assert s.in_force()[0].record == REC
    assert s.apply([ControlUpdate("a.b.c", 3, older)], from_kv=True)  # again: the KV's record wins
    assert s.in_force()[0].record == older and s.revision("a.b.c") == 3


def test_a_clear_read_at_a_lower_revision_never_lifts_a_pushed_kill() -> None:
    # A follower replica that lags answers a direct get with the key as it was before the kill:
    # cleared at an older revision. However often it says so, the pushed kill holds (rule 8).
    s = KillState(KEYS)
    s.apply([ControlUpdate("a.b.c", 5, REC)])
    for _ in range(5):
        assert not s.apply([ControlUpdate("a.b.c", 3, None)], from_kv=True)
    assert s and s.revision("a.b.c") == 5
    assert s.apply([ControlUpdate("a.b.c", 6, None)], from_kv=True)  # a newer clear lifts it
    assert not s


def test_a_disputed_clear_is_settled_by_the_leader() -> None:
    s = KillState(KEYS)
    s.apply([ControlUpdate("a.b.c", 1_000_000, REC)])  # a forged push from the far future
    assert not s.apply([ControlUpdate("a.b.c", 3, None)], from_kv=True)
    assert s.take_disputed() == ["a.b.c"] and s.take_disputed() == []  # asked once per dispute
    assert s.apply([ControlUpdate("a.b.c", 3, None)], from_kv=True, leader=True)  # the leader: cleared
    assert not s and s.revision("a.b.c") == 3


def test_kv_reads_never_regress_state_they_wrote() -> None:
    s = KillState(KEYS)
    s.apply([ControlUpdate("a.b.c", 7, REC)], from_kv=True)
    for _ in range(3):
        assert not s.apply([ControlUpdate("a.b.c", 5, None)], from_kv=True)
    assert s


def test_a_read_that_finds_nothing_never_lifts_a_pushed_kill() -> None:
    s = KillState(KEYS)
    s.apply([ControlUpdate("a.b.c", 1, REC)])  # pushed: a kill at the key's first revision
    for _ in range(5):  # reads that came back empty (a lagging replica, a failed multi-get...)
        assert not s.apply([ControlUpdate("a.b.c", 0, None)], from_kv=True)
    assert s

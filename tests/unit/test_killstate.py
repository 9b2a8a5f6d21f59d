"""The instance's view of kill records: revision order, and distrust of pushes the KV contradicts."""

from __future__ import annotations

from agent_sdk.killstate import KillState
from mesh.control import ControlUpdate
from mesh.models import KillRecord

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


def test_kv_reads_overrule_a_pushed_revision_they_keep_contradicting() -> None:
    s = KillState(KEYS)
    s.apply([ControlUpdate("a.b.c", 1_000_000, REC)])  # pushed, suspiciously high
    assert not s.apply(
        [ControlUpdate("a.b.c", 3, None)], from_kv=True
    )  # one read: could be a lagging replica
    assert s
    assert s.apply([ControlUpdate("a.b.c", 3, None)], from_kv=True)  # again: the KV is the truth
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

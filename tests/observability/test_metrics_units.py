"""Pure parts of the metrics: actor kinds, kill/halt pairing, bounded fleet series."""

from __future__ import annotations

from controller.metrics import OTHER, fleet_series
from controller.metrics_kills import KillClock, actor_kind
from controller.state import Fleet
from mesh.protocol.models import Heartbeat, Status


def test_actor_kinds_are_a_closed_set() -> None:
    assert actor_kind("policy:mail-cap") == "policy"
    assert actor_kind("dashboard:alice") == "dashboard"
    assert actor_kind("alice") == "human"
    assert actor_kind(None) == "human"
    assert actor_kind("") == "human"
    # a name that merely contains the word is a human
    assert actor_kind("my-policy:x") == "human"


def test_halts_after_their_kill_each_count_once() -> None:
    clock = KillClock()
    assert clock.kill("c1", 100.0, "alice", now=100.0) == []
    assert clock.halted("c1", "a#1", 100.25, now=100.3) == ("human", 0.25)
    assert clock.halted("c1", "a#2", 101.0, now=101.0) == ("human", 1.0)
    # a retried ack of the same instance is not a second sample
    assert clock.halted("c1", "a#1", 100.25, now=101.5) is None
    # a retried kill event is not a second kill
    assert clock.kill("c1", 100.0, "alice", now=102.0) == []


def test_halts_heard_before_their_kill_event_are_paired_when_it_arrives() -> None:
    clock = KillClock()
    assert clock.halted("c2", "a#1", 50.5, now=50.5) is None
    assert clock.halted("c2", "a#1", 50.6, now=50.6) is None  # the first halt time is kept
    assert clock.halted("c2", "a#2", 50.7, now=50.7) is None
    got = clock.kill("c2", 50.0, "policy:cap", now=50.8)
    assert sorted((kind, round(seconds, 6)) for kind, seconds in got) == [("policy", 0.5), ("policy", 0.7)]
    assert clock.halted("c2", "a#1", 50.9, now=50.9) is None  # already answered


def test_skew_never_gives_a_negative_latency() -> None:
    clock = KillClock()
    clock.kill("c3", 10.0, "dashboard:bob", now=10.0)
    assert clock.halted("c3", "a#1", 9.0, now=10.1) == ("dashboard", 0.0)


def test_tables_are_bounded_by_age_and_size() -> None:
    clock = KillClock(keep=60.0, max_kills=3)
    for i in range(5):
        clock.kill(f"k{i}", float(i), "alice", now=float(i))
    assert len(clock) == 3
    assert clock.halted("k0", "a#1", 5.0, now=5.0) is None  # forgotten: becomes an orphan
    # everything older than `keep` goes on the next call
    clock.kill("late", 1000.0, "alice", now=1000.0)
    assert len(clock) == 1
    assert clock.halted("late", "a#1", 1000.5, now=1000.5) == ("human", 0.5)


def _fleet(agents: dict[str, int]) -> Fleet:
    fleet = Fleet()
    for uri, n in agents.items():
        for i in range(n):
            key = f"{uri[8:].replace('/', '.')}.i{i}"
            fleet.heartbeat(key, Heartbeat(agent_uri=uri, instance=f"i{i}"), 1.0)
    return fleet


def test_fleet_series_count_instances_and_cap_the_agents() -> None:
    fleet = _fleet({"agent://acme/prod/big": 5, "agent://acme/dev/mid": 3, "agent://beta/prod/small": 1})
    fleet.entries["acme.prod.big.i0"].status = Status.PAUSED
    by_status, series = fleet_series(fleet, max_agents=2)
    assert by_status == {**{s.value: 0 for s in Status}, "active": 8, "paused": 1}
    assert series == {
        ("active", "acme", "prod", "big"): 4,
        ("paused", "acme", "prod", "big"): 1,
        ("active", "acme", "dev", "mid"): 3,
        ("active", OTHER, OTHER, OTHER): 1,
    }
    # the number of series does not grow with instances
    many = _fleet({"agent://acme/prod/big": 2000})
    assert len(fleet_series(many, max_agents=2)[1]) == 1

"""The controller's usage samples: baselines, merging, pruning, resets."""

from __future__ import annotations

from controller.usage import BASELINE, UsageSamples
from mesh.protocol.models import Heartbeat
from mesh.protocol.policy import InstanceUsage, Policy, evaluate, parse_limit

URI = "agent://acme/prod/mailer"


def hb(**usage: float) -> Heartbeat:
    return Heartbeat(agent_uri=URI, instance="i1", usage=usage)


def test_first_totals_are_a_baseline_outside_every_window() -> None:
    s = UsageSamples()
    s.set_window(60)
    assert s.observe("k", hb(emails=500), 1000.0)  # restored totals: changed from nothing
    assert not s.observe("k", hb(emails=500), 1001.0)
    assert s.observe("k", hb(emails=520), 1002.0)
    samples = list(s.samples["k"])
    assert samples[0] == (BASELINE, {"emails": 500}) and samples[-1] == (1002.0, {"emails": 520})
    policy = Policy(name="p", target=URI, limits=[parse_limit("emails<=100/1m")])
    inst = InstanceUsage("i1", True, 0.0, 1002.0, s.samples["k"])
    assert evaluate(policy, [inst], 1002.0) == []  # 20 in the window, not 520
    assert s.by_agent == {URI: {"k"}}


def test_old_samples_are_pruned_and_close_ones_merged() -> None:
    s = UsageSamples()
    s.set_window(512.0)  # one sample per second at most
    s.observe("k", hb(), 0.0)
    for i in range(1, 2001):
        s.observe("k", hb(n=float(i)), i * 0.5)
    samples = s.samples["k"]
    assert samples[-1] == (1000.0, {"n": 2000.0})
    assert len(samples) < 600
    assert samples[0][0] <= 1000.0 - 512.0 < samples[1][0]


def test_totals_going_down_start_over() -> None:
    s = UsageSamples()
    s.observe("k", hb(n=10), 0.0)
    s.observe("k", hb(n=20), 1.0)
    assert s.observe("k", hb(n=3), 2.0)
    assert list(s.samples["k"]) == [(BASELINE, {"n": 3})]
    s.forget(set())
    assert s.samples == {} and s.by_agent == {}

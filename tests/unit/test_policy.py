"""Policy grammar and pure evaluation."""

from __future__ import annotations

import pytest

from mesh.errors import ConfigError
from mesh.protocol.policy import GRAMMAR, InstanceUsage, Limit, Policy, evaluate, parse_duration, parse_limit


@pytest.mark.parametrize(
    ("text", "limit"),
    [
        ("emails<=10000/1h", Limit(counter="emails", value=10000, window=3600)),
        ("cost_usd <= 50 / 1d", Limit(counter="cost_usd", value=50, window=86400)),
        ("tokens<1e6", Limit(counter="tokens", op="<", value=1_000_000)),
        ("emails<=10_000", Limit(counter="emails", value=10000)),
        ("instances<=3", Limit(counter="instances", value=3)),
        ("runtime<=2h", Limit(counter="runtime", value=7200)),
        ("silence<=90s", Limit(counter="silence", value=90)),
        ("cost<=0.5/15m", Limit(counter="cost", value=0.5, window=900)),
    ],
)
def test_limits_parse(text: str, limit: Limit) -> None:
    assert parse_limit(text) == limit
    assert parse_limit(str(limit)) == limit


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "emails",
        "emails>=5",
        "emails<=",
        "emails<=ten",
        "emails<=5/1y",
        "9emails<=5",
        "runtime<=5",
        "runtime<=5m/1h",
        "instances<=3/1h",
        "emails<=5m",
        "emails<=5/0s",
    ],
)
def test_bad_limits_show_the_grammar(bad: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_limit(bad)
    assert f"invalid limit {bad!r}" in str(info.value)
    assert GRAMMAR in str(info.value)


def test_bad_limit_message_is_one_line_with_grammar() -> None:
    with pytest.raises(ConfigError) as info:
        parse_limit("emails>=5")
    assert "\n" not in str(info.value)
    assert "COUNTER<=NUMBER[/WINDOW]" in str(info.value)


def test_durations() -> None:
    assert parse_duration("30s") == 30 and parse_duration("1.5h") == 5400
    with pytest.raises(ConfigError, match="invalid duration"):
        parse_duration("1y")


def test_policy_validation() -> None:
    p = Policy(name="mail-cap", target="agent://acme/*/*", limits=[parse_limit("emails<=5")])
    assert p.actor == "policy:mail-cap" and p.action == "kill"
    with pytest.raises(ValueError, match="policy name"):
        Policy(name="bad name", target="agent://a/b/c", limits=[parse_limit("emails<=5")])
    with pytest.raises(ValueError, match="scheme"):
        Policy(name="p", target="acme/prod", limits=[parse_limit("emails<=5")])
    with pytest.raises(ValueError):
        Policy(name="p", target="agent://a/b/c", limits=[])


def _inst(
    name: str,
    samples: list[tuple[float, dict[str, float]]],
    *,
    live: bool = True,
    started: float = 0.0,
    seen: float | None = None,
) -> InstanceUsage:
    last = samples[-1][0] if samples else started
    return InstanceUsage(name, live, started, last if seen is None else seen, samples)


def test_total_breach_sums_every_instance() -> None:
    policy = Policy(name="cap", target="agent://a/b/c", limits=[parse_limit("emails<=100")])
    a = _inst("a", [(1, {"emails": 40}), (2, {"emails": 60})])
    b = _inst("b", [(2, {"emails": 41})], live=False)  # stopped instances still count
    assert evaluate(policy, [a], now=3) == []
    [breach] = evaluate(policy, [a, b], now=3)
    assert breach.observed == 101 and breach.policy == "cap"
    exactly = _inst("b", [(2, {"emails": 40})])
    assert evaluate(policy, [a, exactly], now=3) == []  # <= admits the limit itself
    strict = Policy(name="cap", target="agent://a/b/c", limits=[parse_limit("emails<100")])
    assert len(evaluate(strict, [a, exactly], now=3)) == 1


def test_rate_breach_counts_only_inside_the_window() -> None:
    policy = Policy(name="rate", target="agent://a/b/c", limits=[parse_limit("emails<=50/10s")])
    a = _inst("a", [(0, {"emails": 1000}), (95, {"emails": 1030}), (100, {"emails": 1040})])
    assert evaluate(policy, [a], now=100) == []  # 40 in the last 10 s
    b = _inst("b", [(0, {"emails": 0}), (89, {"emails": 0}), (99, {"emails": 20})])
    [breach] = evaluate(policy, [a, b], now=100)  # 40 + 20
    assert breach.observed == 60


def test_over_limit_is_a_breach_and_reason_names_it() -> None:
    policy = Policy(name="cap", target="agent://a/b/c", limits=[parse_limit("emails<=10")])
    [breach] = evaluate(policy, [_inst("a", [(1, {"emails": 11})])], now=2)
    assert breach.reason == "policy cap: emails<=10 exceeded (observed 11)"


def test_instances_runtime_and_silence() -> None:
    policy = Policy(
        name="p",
        target="agent://a/b/c",
        limits=[parse_limit("instances<=1"), parse_limit("runtime<=1h"), parse_limit("silence<=60s")],
    )
    young = _inst("a", [(100, {})], started=50, seen=100)
    assert evaluate(policy, [young], now=110) == []
    old_and_quiet = _inst("b", [(10, {})], started=0, seen=10)
    breaches = {b.limit.counter: b.observed for b in evaluate(policy, [young, old_and_quiet], now=4000)}
    assert breaches == {"instances": 2, "runtime": 4000, "silence": 3990}
    dead = _inst("c", [(10, {})], live=False, started=0, seen=10)
    assert evaluate(policy, [young, dead], now=110) == []

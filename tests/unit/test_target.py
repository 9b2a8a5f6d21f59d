"""Target, URI and instance-id parsing: every branch, including bad input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh.errors import InvalidTarget
from mesh.protocol.target import (
    AgentURI,
    Target,
    default_instance_id,
    parse_agent_uri,
    parse_target,
    validate_instance,
)


def test_exact_uri_round_trips() -> None:
    uri = parse_agent_uri("agent://acme/prod/mailer")
    assert uri == AgentURI("acme", "prod", "mailer")
    assert str(uri) == "agent://acme/prod/mailer"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("agent://acme/prod/mailer", Target("acme", "prod", "mailer")),
        ("agent://acme/prod/*", Target("acme", "prod", "*")),
        ("agent://acme/*/*", Target("acme", "*", "*")),
        ("agent://*/*/*", Target("*", "*", "*")),
        ("agent://*/prod/mailer", Target("*", "prod", "mailer")),
        ("agent://A-1/b_2/C3", Target("A-1", "b_2", "C3")),
    ],
)
def test_targets_parse(value: str, expected: Target) -> None:
    assert parse_target(value) == expected
    assert str(parse_target(value)) == value


@pytest.mark.parametrize(
    ("value", "part", "fragment"),
    [
        ("acme/prod/mailer", "scheme", "agent://"),
        ("http://acme/prod/mailer", "scheme", "agent://"),
        ("agent://acme/prod", "path", "2 segment"),
        ("agent://acme/prod/mailer/x", "path", "4 segment"),
        ("agent://acme//mailer", "env", "empty"),
        ("agent:///prod/mailer", "org", "empty"),
        ("agent://acme/prod/", "name", "empty"),
        ("agent://acme/pr.od/mailer", "env", "'.'"),
        ("agent://acme/prod/>", "name", "'>'"),
        ("agent://acme/prod/mail*", "name", "whole segment"),
        ("agent://acme/prod/mail er", "name", "whitespace"),
        ("agent://acme/prod/mail\ter", "name", "whitespace"),
        ("agent://acmé/prod/mailer", "org", "non-ASCII"),
        ("agent://acme/prod/" + "m" * 65, "name", "65 characters"),
        ("agent://_acme/prod/mailer", "org", "start with a letter or digit"),
        ("agent://-acme/prod/mailer", "org", "start with a letter or digit"),
        ("agent://ac$me/prod/mailer", "org", "only letters"),
    ],
)
def test_bad_targets_name_the_part(value: str, part: str, fragment: str) -> None:
    with pytest.raises(InvalidTarget) as info:
        parse_target(value)
    assert info.value.part == part
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError)


def test_64_characters_is_the_limit() -> None:
    assert parse_agent_uri("agent://acme/prod/" + "m" * 64).name == "m" * 64


def test_exact_uri_refuses_wildcards() -> None:
    with pytest.raises(InvalidTarget, match="only allowed in kill/resume targets"):
        parse_agent_uri("agent://acme/*/mailer")


def test_non_string_input_is_refused() -> None:
    with pytest.raises(InvalidTarget):
        parse_target(42)  # type: ignore[arg-type]
    with pytest.raises(InvalidTarget):
        validate_instance(None)  # type: ignore[arg-type]


def test_instance_narrowing() -> None:
    t = parse_target("agent://acme/prod/mailer", instance="us-central1-a")
    assert t.instance == "us-central1-a"
    assert str(t) == "agent://acme/prod/mailer#us-central1-a"
    assert t.uri == "agent://acme/prod/mailer"
    assert parse_target("agent://acme/prod/mailer#us-central1-a") == t


def test_instance_given_twice_must_agree() -> None:
    assert parse_target("agent://a/b/c#i", instance="i").instance == "i"
    with pytest.raises(InvalidTarget, match="given twice"):
        parse_target("agent://a/b/c#i", instance="j")


def test_instance_needs_an_exact_uri() -> None:
    with pytest.raises(InvalidTarget, match="exact agent URI"):
        parse_target("agent://acme/*/*", instance="i-1")


@pytest.mark.parametrize("bad", ["", "a b", "a.b", "*", ">", "é", "_x", "x" * 65])
def test_bad_instance_ids(bad: str) -> None:
    with pytest.raises(InvalidTarget):
        validate_instance(bad)


def test_default_instance_id_is_valid_and_has_pid() -> None:
    import os

    instance = default_instance_id()
    assert validate_instance(instance) == instance
    assert instance.endswith(f"-{os.getpid()}")


def test_default_instance_id_sanitises_hostname(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    monkeypatch.setattr(socket, "gethostname", lambda: "_weird host.name.example")
    instance = default_instance_id()
    assert validate_instance(instance) == instance
    assert instance.startswith("weird-host")

    monkeypatch.setattr(socket, "gethostname", lambda: "h" * 200)
    assert len(default_instance_id()) <= 64


def test_matching() -> None:
    uri = parse_agent_uri("agent://acme/prod/mailer")
    assert parse_target("agent://*/*/*").matches(uri)
    assert parse_target("agent://acme/*/*").matches(uri)
    assert parse_target("agent://acme/prod/*").matches(uri, "i")
    assert parse_target("agent://*/prod/mailer").matches(uri)
    assert not parse_target("agent://acme/dev/*").matches(uri)
    assert not parse_target("agent://other/*/*").matches(uri)
    narrowed = parse_target("agent://acme/prod/mailer#i1")
    assert narrowed.matches(uri, "i1")
    assert not narrowed.matches(uri, "i2")
    assert not narrowed.matches(uri)


def test_overlaps() -> None:
    assert parse_target("agent://acme/*/*").overlaps(parse_target("agent://*/prod/*"))
    assert not parse_target("agent://acme/*/*").overlaps(parse_target("agent://other/*/*"))
    assert parse_target("agent://a/b/c#i").overlaps(parse_target("agent://a/b/c"))
    assert not parse_target("agent://a/b/c#i").overlaps(parse_target("agent://a/b/c#j"))


def test_with_instance_none_drops_it() -> None:
    t = parse_target("agent://a/b/c#i")
    assert t.with_instance(None).instance is None


@given(st.text(max_size=200))
def test_arbitrary_strings_parse_or_raise_invalid_target(value: str) -> None:
    try:
        target = parse_target(value)
    except InvalidTarget:
        return
    assert parse_target(str(target)) == target


@given(
    st.lists(
        st.one_of(st.just("*"), st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,20}", fullmatch=True)),
        min_size=3,
        max_size=3,
    )
)
def test_valid_targets_round_trip(segments: list[str]) -> None:
    value = "agent://" + "/".join(segments)
    assert str(parse_target(value)) == value

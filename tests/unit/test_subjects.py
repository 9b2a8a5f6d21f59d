"""Subject, key and name builders."""

from __future__ import annotations

import pytest

from mesh.errors import ConfigError, InvalidTarget
from mesh.protocol.subjects import Namespace, key_to_target, target_to_key
from mesh.protocol.target import parse_agent_uri, parse_target

NS = Namespace()
URI = parse_agent_uri("agent://acme/prod/mailer")


def test_default_names() -> None:
    assert NS.control_bucket == "mesh_control"
    assert NS.instances_bucket == "mesh_instances"
    assert NS.checkpoints_bucket == "mesh_checkpoints"
    assert NS.leases_bucket == "mesh_leases"
    assert NS.policies_bucket == "mesh_policies"
    assert NS.audit_stream == "MESH_AUDIT"
    assert NS.heartbeat_wildcard == "mesh.hb.>"
    assert NS.audit_wildcard == "mesh.audit.>"
    assert NS.controller_service == "mesh-controller"


def test_prefix_changes_every_name() -> None:
    ns = Namespace("t-1")
    assert ns.control_bucket == "t-1_control"
    assert ns.audit_stream == "T_1_AUDIT"
    assert ns.heartbeat_subject(URI, "i") == "t-1.hb.acme.prod.mailer.i"
    assert ns.control_republish_dest == "t-1.ctl.>"
    assert ns.control_republish_source == "$KV.t-1_control.>"


@pytest.mark.parametrize("bad", ["", "1mesh", "me.sh", "me sh", "m" * 33, "mesh>"])
def test_bad_prefix(bad: str) -> None:
    with pytest.raises(ConfigError, match="MESH_PREFIX"):
        Namespace(bad)


def test_heartbeat_subject_round_trip() -> None:
    subject = NS.heartbeat_subject(URI, "us-central1-a")
    assert subject == "mesh.hb.acme.prod.mailer.us-central1-a"
    assert NS.parse_heartbeat_subject(subject) == (URI, "us-central1-a")


@pytest.mark.parametrize(
    "bad",
    [
        "mesh.hb.acme.prod.mailer",
        "other.hb.a.b.c.d",
        "mesh.ctl.a.b.c.d",
        "mesh.hb.a.b.c.d.e",
        "mesh.hb.a.b.*.d",
    ],
)
def test_parse_heartbeat_subject_refuses(bad: str) -> None:
    with pytest.raises(InvalidTarget):
        NS.parse_heartbeat_subject(bad)


@pytest.mark.parametrize(
    ("target", "key"),
    [
        ("agent://acme/prod/mailer", "acme.prod.mailer"),
        ("agent://acme/prod/*", "acme.prod._"),
        ("agent://acme/*/*", "acme._._"),
        ("agent://*/*/*", "_._._"),
        ("agent://acme/prod/mailer#i-1", "acme.prod.mailer.i-1"),
    ],
)
def test_keys_round_trip(target: str, key: str) -> None:
    assert target_to_key(parse_target(target)) == key
    assert NS.control_key(parse_target(target)) == key
    assert key_to_target(key) == parse_target(target)
    assert NS.control_subject(key) == f"mesh.ctl.{key}"
    assert NS.control_key_from_subject(f"mesh.ctl.{key}") == key


@pytest.mark.parametrize("bad", ["acme.prod", "a.b.c.d.e", "a..c", "a.b.c.*"])
def test_foreign_keys_are_refused(bad: str) -> None:
    with pytest.raises(InvalidTarget):
        key_to_target(bad)


def test_control_key_from_foreign_subject() -> None:
    with pytest.raises(InvalidTarget):
        NS.control_key_from_subject("mesh.hb.a.b.c.d")


def test_instance_subscribes_to_every_key_that_can_match_it() -> None:
    keys = NS.matching_control_keys(URI, "i1")
    assert len(keys) == len(set(keys)) == 9
    assert "acme.prod.mailer" in keys and "_._._" in keys and "acme.prod.mailer.i1" in keys
    # Each key matches the instance, and every possible target that matches it has its key here.
    for key in keys:
        assert key_to_target(key).matches(URI, "i1")
    for org in ("acme", "*"):
        for env in ("prod", "*"):
            for name in ("mailer", "*"):
                assert target_to_key(parse_target(f"agent://{org}/{env}/{name}")) in keys
    subjects = NS.instance_control_subjects(URI, "i1")
    assert subjects == [f"mesh.ctl.{k}" for k in keys]


def test_instance_keys_and_filters() -> None:
    assert NS.instance_key(URI, "i1") == "acme.prod.mailer.i1"
    assert NS.instance_key_filter(parse_target("agent://acme/*/*")) == "acme.*.*.*"
    assert NS.instance_key_filter(parse_target("agent://a/b/c#i")) == "a.b.c.i"


def test_audit_subjects() -> None:
    assert NS.audit_subject("halted", URI, "i1") == "mesh.audit.acme.prod.mailer.i1.halted"
    assert NS.audit_subject("kill", parse_target("agent://acme/*/*")) == "mesh.audit.acme._._._.kill"
    assert NS.audit_subject("kill", parse_target("agent://a/b/c#i")) == "mesh.audit.a.b.c.i.kill"
    assert NS.audit_filter() == "mesh.audit.*.*.*.*.*"
    assert NS.audit_filter("halted", parse_target("agent://acme/*/*")) == "mesh.audit.acme.*.*.*.halted"
    assert NS.audit_filter("halted", parse_target("agent://a/b/c#i")) == "mesh.audit.a.b.c.i.halted"

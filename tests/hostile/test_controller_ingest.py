"""Hostile heartbeats at the controller's decoder (``controller.ingest.Ingest.handle``), without I/O.

Malformed JSON, wrong types, oversized payloads, subject/body mismatches, wildcard and foreign
subjects, statuses an instance may not report, unknown wire versions, unknown fields. Nothing
raises; every message is counted either as a heartbeat or under one bad-reason; only heartbeats
whose subject names exactly the instance in their body ever reach the fleet.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.ingest import Ingest
from controller.state import Fleet
from controller.stats import Stats
from mesh.errors import InvalidTarget
from mesh.protocol.models import Heartbeat
from mesh.protocol.subjects import Namespace

pytestmark = pytest.mark.timeout(300)

NS = Namespace("mesh")
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

segment = st.sampled_from(["acme", "prod", "mailer", "i-1", "a.b", "*", ">", "", "é", "x" * 70, "_", "-x"])
statuses = st.sampled_from(
    ["active", "paused", "killed", "stale", "lost", "crashed", "stopped", "root", 1, None]
)


@st.composite
def heartbeat_message(draw: st.DrawFn) -> tuple[str, bytes]:
    org, env, name, inst = (draw(segment) for _ in range(4))
    subject = draw(
        st.sampled_from(
            [
                f"mesh.hb.{org}.{env}.{name}.{inst}",
                f"mesh.hb.acme.prod.mailer.{inst}",
                "mesh.hb.acme.prod.mailer.i-1",
                f"mesh.hb.{org}.{env}",
                "mesh.hb.acme.prod.mailer.i-1.extra",
            ]
        )
    )
    body_uri = draw(
        st.sampled_from([f"agent://{org}/{env}/{name}", "agent://acme/prod/mailer", "acme/prod/mailer", ""])
    )
    body: dict[str, Any] = {"agent_uri": body_uri, "instance": draw(st.sampled_from([inst, "i-1", "other"]))}
    if draw(st.booleans()):
        body["status"] = draw(statuses)
    if draw(st.booleans()):
        body["v"] = draw(st.sampled_from([1, 2, 0, "1", None]))
    if draw(st.booleans()):
        body["interval"] = draw(st.sampled_from([2.0, 0, -1, 1e9, "fast"]))
    if draw(st.booleans()):
        body["metadata"] = draw(st.sampled_from([{}, {"k": "v"}, [], "x", None]))
    if draw(st.booleans()):
        body["unknown_field"] = "ignored"
    shape = draw(st.sampled_from(["json", "json", "json", "truncated", "bytes", "empty"]))
    if shape == "json":
        data = json.dumps(body).encode()
    elif shape == "truncated":
        data = json.dumps(body).encode()[: draw(st.integers(0, 20))]
    elif shape == "bytes":
        data = draw(st.binary(max_size=200))
    else:
        data = b""
    return subject, data


def make_ingest() -> tuple[Ingest, Fleet, Stats, list[Any]]:
    fleet, stats, transitions = Fleet(), Stats(), []
    return Ingest(NS, fleet, stats, transitions.append, clock=lambda: 1_000_000.0), fleet, stats, transitions


def check_fleet(fleet: Fleet, accepted: dict[str, Heartbeat]) -> None:
    for key, entry in fleet.entries.items():
        agent, instance = NS.parse_heartbeat_subject(f"mesh.hb.{key}")  # a real, valid instance name
        assert entry.agent_uri == str(agent) and entry.instance == instance
        assert key in accepted


@FUZZ
@given(messages=st.lists(heartbeat_message(), min_size=1, max_size=20))
def test_ingest_never_raises_and_counts_everything(messages: list[tuple[str, bytes]]) -> None:
    ingest, fleet, stats, _ = make_ingest()
    accepted: dict[str, Heartbeat] = {}
    for subject, data in messages:
        ingest.handle(subject, data)
        try:
            agent, instance = NS.parse_heartbeat_subject(subject)
            hb = Heartbeat.model_validate_json(data)
        except (InvalidTarget, ValueError):
            continue
        if (
            hb.agent_uri == str(agent)
            and hb.instance == instance
            and hb.v == 1
            and hb.status.value
            not in (
                "stale",
                "lost",
            )
        ):
            accepted[subject.removeprefix("mesh.hb.")] = hb
    assert stats.received == len(messages)
    assert stats.heartbeats + sum(stats.bad.values()) == stats.received
    check_fleet(fleet, accepted)
    assert set(fleet.entries) == set(accepted)


def test_ingest_specific_attacks() -> None:
    ingest, fleet, stats, _ = make_ingest()
    good = {"agent_uri": "agent://acme/prod/mailer", "instance": "i-1"}
    cases = {
        "oversized": (
            "mesh.hb.acme.prod.mailer.i-1",
            json.dumps({**good, "metadata": {"x": "y" * 200_000}}).encode(),
        ),
        "malformed_json": ("mesh.hb.acme.prod.mailer.i-1", b"{not json"),
        "random": ("mesh.hb.acme.prod.mailer.i-1", os.urandom(512)),
        # another agent's subject, this agent's body: impersonation in either direction
        "mismatch": ("mesh.hb.acme.prod.other.i-1", json.dumps(good).encode()),
        "mismatch_instance": ("mesh.hb.acme.prod.mailer.i-2", json.dumps(good).encode()),
        "claims_lost": ("mesh.hb.acme.prod.mailer.i-1", json.dumps({**good, "status": "lost"}).encode()),
        "future_version": ("mesh.hb.acme.prod.mailer.i-1", json.dumps({**good, "v": 99}).encode()),
        "wildcard_subject": (
            "mesh.hb.acme.prod.*.i-1",
            json.dumps({**good, "agent_uri": "agent://acme/prod/*"}).encode(),
        ),
        "dotted_name": (
            "mesh.hb.acme.prod.a.b.i-1",
            json.dumps({"agent_uri": "agent://acme/prod/a.b", "instance": "i-1"}).encode(),
        ),
    }
    for subject, data in cases.values():
        ingest.handle(subject, data)
    assert fleet.entries == {}
    assert stats.heartbeats == 0
    assert sum(stats.bad.values()) == len(cases)
    ingest.handle("mesh.hb.acme.prod.mailer.i-1", json.dumps({**good, "extra": [1, 2]}).encode())
    assert list(fleet.entries) == ["acme.prod.mailer.i-1"]

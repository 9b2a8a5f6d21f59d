"""nats-identity.conf stays in step with nats.conf and with mesh/protocol/permissions.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mesh.protocol.permissions import AGENT_EVENTS

ROOT = Path(__file__).resolve().parents[2]
SHARED = (ROOT / "nats.conf").read_text()
IDENTITY = (ROOT / "nats-identity.conf").read_text()


def block(text: str, name: str) -> str:
    match = re.search(rf"^{name} = \{{.*?^\}}$", text, re.S | re.M)
    assert match is not None, f"{name} missing"
    return match.group(0)


@pytest.mark.parametrize("name", ["CONTROLLER_PERMISSIONS", "GATEWAY_PERMISSIONS"])
def test_service_roles_are_those_of_nats_conf(name: str) -> None:
    assert block(IDENTITY, name) == block(SHARED, name)


def test_admin_differs_only_by_the_identities_bucket() -> None:
    shared, identity = block(SHARED, "ADMIN_PERMISSIONS"), block(IDENTITY, "ADMIN_PERMISSIONS")
    extra = [line for line in identity.splitlines() if line not in shared.splitlines()]
    assert [line.strip() for line in extra] == ['"$KV.mesh_identities.>"']


def test_agent_lifecycle_events_match_the_shared_agent_role() -> None:
    shared = re.findall(r'"mesh\.audit\.\*\.\*\.\*\.\*\.(\w+)"', block(SHARED, "AGENT_PERMISSIONS"))
    assert tuple(shared) == AGENT_EVENTS


def test_only_services_bypass_the_callout() -> None:
    users = re.findall(r"\{ user: (\w+),", IDENTITY)
    assert sorted(users) == ["admin", "callout", "controller", "gateway", "sys"]
    bypass = re.search(r"auth_users: \[([^\]]*)\]", IDENTITY)
    assert bypass is not None
    assert sorted(bypass.group(1).replace(",", " ").split()) == [
        "admin",
        "callout",
        "controller",
        "gateway",
        "sys",
    ]
    assert "issuer: $MESH_CALLOUT_ISSUER" in IDENTITY

"""Chaos fixtures: a 3-node loopback cluster under the nats.conf roles."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from .cluster import ClusterNode, loopback_cluster

#: Every role nats.conf reads a password for (a missing one stops the server from starting).
ROLES = ("ADMIN", "AGENT", "OPERATOR", "CONTROLLER", "AUDITOR", "GATEWAY", "SYS", "ROUTE")


@pytest.fixture
def cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[list[ClusterNode], dict[str, str]]]:
    env = {f"MESH_{r}_PASSWORD": "pw-" + secrets.token_urlsafe(12) for r in ROLES}
    for k, v in env.items():
        monkeypatch.setenv(k, v)  # nats.conf reads the role passwords from the servers' environment
    nodes = loopback_cluster(tmp_path, env)
    for node in nodes:
        node.server.start()
    try:
        yield nodes, env
    finally:
        for node in nodes:
            node.server.kill()

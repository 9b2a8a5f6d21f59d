"""Shared fixtures: a real nats-server with JetStream on a free port, and a fresh namespace per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from mesh.connection import Connection
from mesh.provision import ProvisionOptions, provision
from mesh.server import EmbeddedServer
from mesh.settings import Settings


def missing_tool(reason: str) -> None:
    """Skip for a missing system tool on a developer's machine; fail where it must be there (CI)."""
    if os.environ.get("MESH_REQUIRE_TOOLS"):
        pytest.fail(f"{reason} (MESH_REQUIRE_TOOLS is set: .ci/run installs it)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """One server for the session; tests stay apart through their own MESH_PREFIX."""
    server = EmbeddedServer(tmp_path_factory.mktemp("nats"), port=0)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    """A server for this test alone, which it may restart or kill (chaos tests)."""
    server = EmbeddedServer(tmp_path / "nats", port=0)
    server.start()
    yield server
    server.kill()


@pytest.fixture
def prefix() -> str:
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture
def settings(nats_server: EmbeddedServer, prefix: str) -> Settings:
    return Settings(nats_url=nats_server.url, prefix=prefix, actor="tester", connect_timeout=3.0)


@pytest.fixture
async def conn(settings: Settings) -> AsyncIterator[Connection]:
    """A connection with the namespace provisioned."""
    c = await Connection.open(settings, name="test")
    await provision(c.js, c.ns, ProvisionOptions())
    yield c
    await c.close()

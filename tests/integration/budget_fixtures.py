"""The budget tests' fixtures (test_budgets_*), imported by their function names, used by ``name``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from controller.runner import Controller
from mesh.client.operator import AsyncMesh
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection
from mesh.transport.server import EmbeddedServer
from tests.integration.controller_helpers import fast_options, running_controller


@pytest.fixture(scope="module", name="nats_server")
def budget_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """A server of this module's own, as the policy tests have (heavy traffic, kept apart)."""
    server = EmbeddedServer(tmp_path_factory.mktemp("nats-budgets"), port=0)
    server.start()
    yield server
    server.stop()


@pytest.fixture(name="ctl")
async def budget_controller(conn: Connection, settings: Settings) -> AsyncIterator[Controller]:
    async with running_controller(settings, fast_options(policy_reload_every=0.2)) as c:
        yield c


@pytest.fixture(name="mesh")
async def budget_mesh(conn: Connection, settings: Settings) -> AsyncIterator[AsyncMesh]:
    async with AsyncMesh(settings) as m:
        yield m

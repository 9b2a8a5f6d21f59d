"""Integration fixtures: for the sync-SDK tests, an operator on its own loop thread and a pool of agents."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mesh.runtime.settings import Settings
from tests.integration.sdk_helpers import AgentPool, Ops


@pytest.fixture
def ops(settings: Settings) -> Iterator[Ops]:
    o = Ops(settings)
    yield o
    o.close()


@pytest.fixture
def pool(settings: Settings, ops: Ops) -> Iterator[AgentPool]:
    p = AgentPool(settings)
    yield p
    p.close()

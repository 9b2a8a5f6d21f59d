"""Fixtures for the integration tests: a synchronous operator for the tests that run the examples."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mesh.runtime.settings import Settings
from tests.integration.sdk_helpers import Ops


@pytest.fixture
def ops(settings: Settings) -> Iterator[Ops]:
    o = Ops(settings)
    yield o
    o.close()

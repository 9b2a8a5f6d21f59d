"""Fixtures for the integration tests: the sync-SDK tests' operator, for the tests that run the examples."""

from __future__ import annotations

from tests.integration.conftest import ops

__all__ = ["ops"]

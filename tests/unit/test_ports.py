"""The test suite's port helper: ports outside the ephemeral range, a disjoint block per xdist worker."""

from __future__ import annotations

import socket

import pytest

from tests import ports


def test_a_port_is_below_the_ephemeral_range_and_free() -> None:
    port = ports.free_port()
    assert port < ports._ephemeral_low()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # raises if somebody holds it


def test_two_workers_draw_from_disjoint_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    first = set(ports._block())
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    second = set(ports._block())
    assert first and second
    assert not first & second


def test_a_port_someone_listens_on_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        taken = int(held.getsockname()[1])
        held.listen()
        monkeypatch.setattr(ports, "_next", iter([taken, taken + 1]))
        assert ports.free_port() == taken + 1

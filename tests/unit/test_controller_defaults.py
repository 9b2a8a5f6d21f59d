"""The README's default thresholds: stale after 3 missed heartbeats, lost after 30 s of silence,
with the options a controller gets when none are given (library and ``mesh controller`` alike)."""

from __future__ import annotations

import inspect
from datetime import UTC, datetime

from cli.controller_cmd import controller as controller_command
from controller import ControllerOptions
from controller.runner import Controller
from controller.state import Fleet
from mesh.protocol.models import Heartbeat, Status
from mesh.runtime.settings import Settings

T0 = 1_700_000_000.0
URI = "agent://acme/prod/mailer"
KEY = "acme.prod.mailer.i1"


def _default_fleet() -> Fleet:
    return Controller(Settings(nats_url="nats://127.0.0.1:1")).fleet  # built, never connected


def _status_at(interval: float, silent_for: float) -> Status:
    fleet = _default_fleet()
    hb = Heartbeat(agent_uri=URI, instance="i1", interval=interval, time=datetime.fromtimestamp(T0, UTC))
    fleet.heartbeat(KEY, hb, T0)
    status = Status.ACTIVE
    for t in fleet.sweep(T0 + silent_for):
        status = t.new
    return status


def test_stale_after_three_missed_heartbeats_by_default() -> None:
    assert _status_at(interval=2.0, silent_for=5.9) is Status.ACTIVE
    assert _status_at(interval=2.0, silent_for=6.1) is Status.STALE
    assert _status_at(interval=1.0, silent_for=3.1) is Status.STALE  # measured in its own intervals


def test_lost_after_30_seconds_of_silence_by_default() -> None:
    assert _status_at(interval=2.0, silent_for=29.9) is not Status.LOST
    assert _status_at(interval=2.0, silent_for=30.1) is Status.LOST


def test_the_cli_controller_has_the_same_defaults() -> None:
    params = inspect.signature(controller_command).parameters
    options = ControllerOptions()
    assert params["lost_after"].default == options.lost_after == 30.0
    assert params["stale_intervals"].default == options.stale_intervals == 3.0

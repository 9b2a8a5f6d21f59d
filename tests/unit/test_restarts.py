"""mesh.runtime.restarts: when a supervisor restarts a crashed part and when it gives up."""

from __future__ import annotations

import pytest

from mesh.runtime.restarts import CrashBudget, describe_exit


def test_restarts_up_to_the_limit_within_the_window_then_gives_up() -> None:
    budget = CrashBudget(limit=3, window=60.0)
    assert [budget.crash(t) for t in (0.0, 1.0, 2.0)] == [True, True, True]
    assert budget.crash(3.0) is False
    assert budget.recent == 4


def test_crashes_older_than_the_window_are_forgotten() -> None:
    budget = CrashBudget(limit=2, window=10.0)
    assert budget.crash(0.0) and budget.crash(5.0)
    assert budget.crash(10.5) is True  # the crash at 0.0 has left the window
    assert budget.recent == 2
    assert budget.crash(11.0) is False


def test_limit_zero_never_restarts_and_bad_settings_are_refused() -> None:
    assert CrashBudget(limit=0).crash(0.0) is False
    with pytest.raises(ValueError, match="window"):
        CrashBudget(window=0)


def test_describe_exit_names_the_status_or_the_signal() -> None:
    assert describe_exit(2) == "exit status 2"
    assert describe_exit(-9) == "killed by signal 9 (SIGKILL)"
    assert describe_exit(-200) == "killed by signal 200"

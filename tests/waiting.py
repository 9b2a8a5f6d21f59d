"""Wait for a condition with a generous bound that only stops a hang; never a timing assertion."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

#: How long any wait may take before the test fails as hung. Generous on purpose: it bounds a
#: hang on a slow, shared CI machine, and no test asserts how quickly a condition was met.
HANG = 30.0
#: How long a kill report waits, in a test that keeps one instance silent on purpose: the report
#: returns only when this window ends, and the live instances' acks (milliseconds) must land in
#: it. Not a timing claim: ten seconds only has to outlast a loaded CI machine.
SILENT_WINDOW = 10.0
POLL = 0.02


def _timed_out(what: str, timeout: float, last: Any) -> AssertionError:
    return AssertionError(f"timed out after {timeout:g} s waiting for {what}; last value: {last!r}")


def wait_until(predicate: Callable[[], Any], timeout: float = HANG, what: str = "condition") -> Any:
    """Poll ``predicate()`` until it is truthy and return its value; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() > deadline:
            raise _timed_out(what, timeout, last)
        # sleep-ok: the poll interval: the loop re-checks until the condition holds or the deadline passes
        time.sleep(POLL)


async def await_until(
    predicate: Callable[[], Any], timeout: float = HANG, what: str = "condition", *, retry: bool = False
) -> Any:
    """``wait_until`` for async tests: ``predicate`` may return an awaitable.

    With ``retry``, an exception from the predicate (a read while a server restarts) counts as
    "not yet" and is shown in the failure instead of ending the wait.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            last = predicate()
            if asyncio.iscoroutine(last) or isinstance(last, asyncio.Future):
                last = await last
        except Exception as exc:
            if not retry:
                raise
            last = exc
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            raise _timed_out(what, timeout, last)
        # sleep-ok: the poll interval: the loop re-checks until the condition holds or the deadline passes
        await asyncio.sleep(POLL)

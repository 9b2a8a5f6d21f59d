"""Budgets that hold (issue 18), counted from the agents' own logs with instances racing flat out."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import pytest

from controller.runner import Controller
from mesh.client.operator import AsyncMesh
from mesh.protocol import quota
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection

# The module's own server, its controller and operator (fixtures, used by their names).
from tests.integration.budget_fixtures import budget_controller, budget_mesh, budget_server  # noqa: F401
from tests.integration.budget_helpers import (
    BUDGET_KEY,
    MAILER,
    _true,
    granted,
    killed_by,
    policies_loaded,
    quota_ledger,
    race,
    released,
    spend_after,
    spend_before,
    spend_then_work,
    start,
)
from tests.integration.controller_helpers import (
    eventually,
    fast_options,
    running_controller,
)

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("n", [2, 4, 8])
async def test_spending_before_the_action_never_exceeds_the_limit(
    conn: Connection, ctl: Controller, mesh: AsyncMesh, settings: Settings, tmp_path: Path, n: int
) -> None:
    await mesh.set_policy("cap", MAILER, ["emails<=100/1h"])
    await policies_loaded(ctl, 1)
    mailers = await race(settings, tmp_path, spend_before, n)
    killed_by(mailers, "cap")
    total = sum(m.sent for m in mailers)
    assert total <= 100, f"sent {total} emails under emails<=100/1h"
    # Every unit is accounted for: the ledger charged exactly what the instances were granted
    # less what they gave back on their way out, and all of the budget was handed out.
    ledger = await quota_ledger(conn, BUDGET_KEY)
    assert quota.counted(ledger, time.time()) == granted(mailers) - released(mailers)
    assert granted(mailers) == 100
    assert total == 100 - released(mailers)


@pytest.mark.parametrize("n", [2, 4])
async def test_spending_after_the_action_overshoots_by_at_most_one_per_instance(
    ctl: Controller, mesh: AsyncMesh, settings: Settings, tmp_path: Path, n: int
) -> None:
    await mesh.set_policy("cap", MAILER, ["emails<=100/1h"])
    await policies_loaded(ctl, 1)
    mailers = await race(settings, tmp_path, spend_after, n)
    killed_by(mailers, "cap")
    total = sum(m.sent for m in mailers)
    assert total <= 100 + len(mailers), f"sent {total} emails under emails<=100/1h"


@pytest.mark.parametrize("how", ["restart", "standby takeover"])
async def test_a_controller_restart_during_spending_loses_no_grant_and_doubles_none(
    conn: Connection, mesh: AsyncMesh, settings: Settings, tmp_path: Path, how: str
) -> None:
    limit = 1500
    opts = fast_options(policy_reload_every=0.2)
    async with contextlib.AsyncExitStack() as outer:
        first_stack = contextlib.AsyncExitStack()
        first = await first_stack.enter_async_context(running_controller(settings, opts))
        if how == "standby takeover":
            standby = await outer.enter_async_context(running_controller(settings, opts, wait_active=False))
        await mesh.set_policy("cap", MAILER, [f"emails<={limit}/1h"])
        await policies_loaded(first, 1)
        mailers = start(settings, tmp_path, spend_then_work, 2)
        await eventually(lambda: _true(sum(m.sent for m in mailers) >= 200), what="spending under way")
        await first_stack.aclose()  # the active controller goes, mid-run
        if how == "restart":
            second = await outer.enter_async_context(running_controller(settings, opts))
        else:
            second = standby
            await eventually(lambda: _true(standby.ingesting), what="the standby to take over")
        for m in mailers:
            await asyncio.to_thread(m.join, 60)
        assert not any(m.is_alive() for m in mailers)
        assert first.stats.lease_grants > 0 and second.stats.lease_grants > 0  # both granted
    killed_by(mailers, "cap")
    total = sum(m.sent for m in mailers)
    ledger = await quota_ledger(conn, BUDGET_KEY)
    # No grant lost (everything the ledger charged reached an instance) and none doubled (nothing
    # an instance holds is missing from the ledger): the two sums are equal, and the whole budget
    # was handed out exactly once.
    assert quota.counted(ledger, time.time()) == granted(mailers) - released(mailers)
    assert granted(mailers) == limit
    assert total == limit - released(mailers) <= limit

"""nats-server ``kill -9`` and restart on the same store while instances spend from quota leases."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest

from mesh.client.operator import AsyncMesh
from mesh.protocol import quota
from mesh.protocol.codec import decode
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection
from mesh.transport.provision import ProvisionOptions, provision
from mesh.transport.server import EmbeddedServer
from tests.integration.budget_helpers import (
    BUDGET_KEY,
    MAILER,
    granted,
    killed_by,
    released,
    spend_then_work,
    start,
)
from tests.integration.controller_helpers import eventually, fast_options, running_controller

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(180)]


async def _true(value: bool) -> bool:
    return value


async def test_a_server_crash_mid_spend_loses_no_grant_and_doubles_none(
    own_server: EmbeddedServer, tmp_path: Path
) -> None:
    limit = 1500
    settings = Settings(nats_url=own_server.url, prefix="q" + uuid.uuid4().hex[:8], actor="chaos")
    async with Connection(settings) as conn:
        await provision(conn.js, conn.ns, ProvisionOptions())
    async with running_controller(settings, fast_options(policy_reload_every=0.2)) as ctl:
        async with AsyncMesh(settings) as op:
            await op.set_policy("cap", MAILER, [f"emails<={limit}/1h"])

        async def loaded() -> bool:
            return ctl.stats.policies == 1

        await eventually(loaded, what="the policy loaded")
        mailers = start(settings, tmp_path, spend_then_work, 2)
        await eventually(lambda: _true(sum(m.sent for m in mailers) >= 200), what="spending under way")
        grants_before = ctl.stats.lease_grants
        own_server.kill()  # mid-run: leases in hand are spent, then the instances wait (fail-closed)
        await asyncio.to_thread(own_server.start)
        for m in mailers:
            await asyncio.to_thread(m.join, 90)
        assert not any(m.is_alive() for m in mailers), "an instance never stopped"
        assert ctl.stats.lease_grants > grants_before  # the budget ran out after the restart
    killed_by(mailers, "cap")
    total = sum(m.sent for m in mailers)
    async with Connection(settings) as conn:
        kv = await conn.js.key_value(conn.ns.quota_bucket)
        ledger = decode(quota.Ledger, (await kv.get(BUDGET_KEY)).value or b"")
    assert quota.counted(ledger, time.time()) == granted(mailers) - released(mailers)
    assert granted(mailers) == limit
    assert total == limit - released(mailers) <= limit

"""A controller started against an empty server creates what the mesh needs, and then works."""

from __future__ import annotations

import pytest

from mesh.errors import ProvisioningConflict
from mesh.protocol.models import Status
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection
from mesh.transport.provision import ProvisionOptions, provision
from tests.integration.controller_helpers import (
    fast_options,
    heartbeat,
    running_controller,
    send,
    status_of,
    wait_status,
)


async def test_controller_provisions_a_fresh_namespace(settings: Settings) -> None:
    async with Connection(settings) as probe:
        ns = probe.ns
        names = {s.config.name for s in await probe.js.streams_info()}
        assert ns.audit_stream not in names and f"KV_{ns.control_bucket}" not in names
        async with running_controller(settings, fast_options()):
            names = {s.config.name for s in await probe.js.streams_info()}
            assert {ns.audit_stream, f"KV_{ns.control_bucket}", f"KV_{ns.instances_bucket}"} <= names
            await send(probe.nc, ns, heartbeat("agent://acme/prod/mailer", "i1"))
            await wait_status(probe.js, ns, "acme.prod.mailer.i1", Status.ACTIVE)
            record = await status_of(probe.js, ns, "acme.prod.mailer.i1")
            assert record is not None and record.instance == "i1"


async def test_controller_adopts_what_mesh_init_chose(settings: Settings) -> None:
    """`mesh init --audit-days 30` (or `--replicas 3`): the controller, on its defaults, works with it."""
    async with Connection(settings) as probe:
        ns = probe.ns
        await provision(probe.js, ns, ProvisionOptions(audit_max_age=30 * 86400.0))
        async with running_controller(settings, fast_options()):
            await send(probe.nc, ns, heartbeat("agent://acme/prod/mailer", "i1"))
            await wait_status(probe.js, ns, "acme.prod.mailer.i1", Status.ACTIVE)
        info = await probe.js.stream_info(ns.audit_stream)
        assert info.config.max_age == 30 * 86400.0  # adopted, not rewritten


async def test_adopting_still_refuses_a_real_conflict(settings: Settings) -> None:
    async with Connection(settings) as probe:
        await provision(probe.js, probe.ns, ProvisionOptions(control_history=4))
        with pytest.raises(ProvisioningConflict, match="history"):
            await provision(probe.js, probe.ns, ProvisionOptions(adopt_existing=True))

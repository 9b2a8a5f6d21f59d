"""A controller started against an empty server creates what the mesh needs, and then works."""

from __future__ import annotations

from mesh.connection import Connection
from mesh.models import Status
from mesh.settings import Settings
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

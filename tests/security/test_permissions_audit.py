"""Roles enforced by nats-server: the audit stream is append-only for every user."""

from __future__ import annotations

import asyncio
from typing import Any

import nats.errors
import pytest
from nats.js.api import StreamConfig

from mesh.errors import MeshError
from mesh.protocol.models import AuditEvent, EventType
from mesh.transport import natserrors
from mesh.transport.audit import publish_event

from .conftest import SecureServer
from .permissions_helpers import (
    AUDIT,
    DENY_TIMEOUT,
    NS,
    assert_denied,
    audit_count,
    eventually,
    through_mesh,
)

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("user", ["admin", "agent", "operator", "controller", "auditor"])
async def test_no_user_can_delete_purge_or_rewrite_the_audit_stream(
    secure_server: SecureServer, user: str
) -> None:
    writer = await secure_server.connect("operator")
    await publish_event(
        writer.js, NS, AuditEvent(type=EventType.KILL, target="agent://acme/prod/x", actor="operator")
    )
    await writer.close()
    before = await audit_count(secure_server)

    conn = await secure_server.connect(user)
    try:
        js = conn.nc.jetstream(timeout=DENY_TIMEOUT)
        lax = StreamConfig(name=AUDIT, subjects=[NS.audit_wildcard], deny_delete=False, deny_purge=False)
        control_stream = f"KV_{NS.control_bucket}"
        natserrors._VIOLATIONS.clear()
        await asyncio.gather(
            assert_denied(
                js.delete_stream(AUDIT),
                "delete the audit stream",
                f"$JS.API.STREAM.DELETE.{AUDIT}",
                fresh=False,
            ),
            assert_denied(
                js.purge_stream(AUDIT), "purge the audit stream", f"$JS.API.STREAM.PURGE.{AUDIT}", fresh=False
            ),
            assert_denied(
                asyncio.wait_for(js.delete_msg(AUDIT, 1), DENY_TIMEOUT),  # no timeout parameter of its own
                "delete audit events",
                f"$JS.API.STREAM.MSG.DELETE.{AUDIT}",
                fresh=False,
            ),
            assert_denied(
                js.update_stream(lax),
                "update the audit stream",
                f"$JS.API.STREAM.UPDATE.{AUDIT}",
                fresh=False,
            ),
            # nor any KV bucket's stream
            assert_denied(
                js.delete_stream(control_stream),
                "delete buckets",
                f"$JS.API.STREAM.DELETE.{control_stream}",
                fresh=False,
            ),
            assert_denied(
                js.purge_stream(control_stream),
                "purge buckets",
                f"$JS.API.STREAM.PURGE.{control_stream}",
                fresh=False,
            ),
        )
    finally:
        await conn.close()

    assert await audit_count(secure_server) == before
    auditor = await secure_server.connect("auditor")
    try:
        cfg = (await auditor.js.stream_info(AUDIT)).config
        assert cfg.deny_delete and cfg.deny_purge
    finally:
        await auditor.close()


async def test_system_account_has_no_reach_into_the_mesh_account(secure_server: SecureServer) -> None:
    before = await audit_count(secure_server)
    sys_conn = await secure_server.connect("sys")
    try:
        js = sys_conn.nc.jetstream(timeout=DENY_TIMEOUT)
        with pytest.raises(MeshError):  # no JetStream in the system account: refused or unanswered
            await through_mesh(js.delete_stream(AUDIT), "delete the audit stream")
        with pytest.raises(MeshError):
            await through_mesh(js.purge_stream(AUDIT), "purge the audit stream")
        # and it does not see the mesh's subjects at all (separate account)
        seen: list[Any] = []

        async def cb(msg: Any) -> None:
            seen.append(msg)

        await sys_conn.nc.subscribe("mesh.>", cb=cb)
        await sys_conn.nc.flush()
        # A witness in the mesh account: once it has the event, the server has routed it to
        # every subscriber, and sys's own round trip after that would bring it along.
        witness = await secure_server.connect("auditor")
        witnessed: list[Any] = []

        async def on_witness(msg: Any) -> None:
            witnessed.append(msg)

        await witness.nc.subscribe(NS.audit_wildcard, cb=on_witness)
        await witness.nc.flush()
        op = await secure_server.connect("operator")
        await publish_event(op.js, NS, AuditEvent(type=EventType.KILL, target="agent://acme/prod/y"))
        await op.close()
        await eventually(lambda: witnessed, what="the mesh account to see the event")
        await witness.close()
        await sys_conn.nc.flush()
        assert seen == []
    finally:
        await sys_conn.close()
    assert await audit_count(secure_server) == before + 1


async def test_stream_flags_alone_refuse_purge_and_delete(conn: Any) -> None:
    """On a server with no auth at all (full API rights), the audit stream's own
    ``deny_delete``/``deny_purge`` still refuse purging it and deleting its messages."""
    await publish_event(conn.js, conn.ns, AuditEvent(type=EventType.KILL, target="agent://a/b/c"))
    with pytest.raises(nats.js.errors.APIError, match=r"(?i)purge"):
        await conn.js.purge_stream(conn.ns.audit_stream)
    with pytest.raises(nats.js.errors.APIError, match=r"(?i)delete"):
        await conn.js.delete_msg(conn.ns.audit_stream, 1)
    info = await conn.js.stream_info(conn.ns.audit_stream)
    assert info.state.messages == 1

"""Roles enforced by nats-server: the operator, the controller and the auditor."""

from __future__ import annotations

import time

import nats.errors
import pytest
from nats.js.api import StreamConfig

from mesh.errors import PermissionDenied
from mesh.protocol.codec import decode
from mesh.protocol.models import AuditEvent, EventType, InstanceStatus, Status
from mesh.transport import natserrors
from mesh.transport.audit import publish_event
from mesh.transport.connection import recent_permission_violation
from mesh.transport.control import read_records

from .conftest import SecureServer
from .permissions_helpers import (
    AUDIT,
    DENY_TIMEOUT,
    NS,
    assert_denied,
    assert_subscribe_denied,
    eventually,
    kill_record,
    kv_subject,
    status_record,
)

pytestmark = pytest.mark.timeout(120)


# -------------------------------------------------------------------------------------------
# operator
# -------------------------------------------------------------------------------------------


async def test_operator_kills_resumes_reads_and_cannot_forge(secure_server: SecureServer) -> None:
    operator = await secure_server.connect("operator")
    controller = await secure_server.connect("controller")
    try:
        # the controller has written a status and the agent a checkpoint
        cikv = await controller.js.key_value(NS.instances_bucket)
        await cikv.put("acme.prod.op.i1", status_record("agent://acme/prod/op", "i1"))

        okv = await operator.js.key_value(NS.control_bucket)
        rev = await okv.put("acme.prod.op", kill_record("agent://acme/prod/op", "operator"))
        assert rev > 0
        await publish_event(operator.js, NS, AuditEvent(type=EventType.KILL, target="agent://acme/prod/op"))
        await okv.delete("acme.prod.op")
        await publish_event(operator.js, NS, AuditEvent(type=EventType.RESUME, target="agent://acme/prod/op"))
        keys = await okv.history("acme.prod.op")  # an ordered consumer on the bucket
        assert [e.operation for e in keys][-1] == "DEL"

        ikv = await operator.js.key_value(NS.instances_bucket)
        status = decode(InstanceStatus, (await ikv.get("acme.prod.op.i1")).value)
        assert status.status is Status.ACTIVE
        assert "acme.prod.op.i1" in await ikv.keys()
        ckv = await operator.js.key_value(NS.checkpoints_bucket)
        with pytest.raises(nats.js.errors.KeyNotFoundError):
            await ckv.get("acme.prod.op.i1")

        # reading the audit stream: ordered consumer and a pull consumer
        sub = await operator.js.subscribe("mesh.audit.acme.prod.op.>", ordered_consumer=True)
        msg = await sub.next_msg(timeout=5)
        assert decode(AuditEvent, msg.data).type is EventType.KILL
        await sub.unsubscribe()

        js = operator.nc.jetstream(timeout=DENY_TIMEOUT)
        await assert_denied(
            js.publish(kv_subject(NS.instances_bucket, "acme.prod.op.i1"), b"{}"),
            "write status",
            "$KV.mesh_instances.acme.prod.op.i1",
        )
        await assert_denied(
            js.publish(kv_subject(NS.checkpoints_bucket, "acme.prod.op.i1"), b"{}"),
            "write checkpoints",
            "$KV.mesh_checkpoints.acme.prod.op.i1",
        )
        with pytest.raises(PermissionDenied):  # a forged acknowledgement
            await publish_event(
                js,
                NS,
                AuditEvent(type=EventType.HALTED, agent_uri="agent://acme/prod/op", instance="i1"),
                timeout=DENY_TIMEOUT,
                attempts=1,
            )
        await assert_denied(
            js.add_stream(StreamConfig(name="ROGUE", subjects=["rogue.>"])),
            "create streams",
            "$JS.API.STREAM.CREATE.ROGUE",
        )
    finally:
        await operator.close()
        await controller.close()


# -------------------------------------------------------------------------------------------
# controller
# -------------------------------------------------------------------------------------------


async def test_controller_allowed_and_denied(secure_server: SecureServer) -> None:
    controller = await secure_server.connect("controller")
    try:
        ikv = await controller.js.key_value(NS.instances_bucket)
        await ikv.put("acme.prod.ctl.i1", status_record("agent://acme/prod/ctl", "i1"))
        lkv = await controller.js.key_value(NS.leases_bucket)
        rev = await lkv.create(f"lease-{time.monotonic_ns()}", b'{"holder":"c1"}')
        assert rev > 0
        qkv = await controller.js.key_value(NS.quota_bucket)
        assert await qkv.create(f"ledger-{time.monotonic_ns()}", b"{}") > 0
        for etype in (EventType.STALE, EventType.LOST, EventType.RECOVERED):
            await publish_event(
                controller.js, NS, AuditEvent(type=etype, agent_uri="agent://acme/prod/ctl", instance="i1")
            )
        psub = await controller.js.pull_subscribe(NS.audit_wildcard, durable="controller-audit", stream=AUDIT)
        msgs = await psub.fetch(1, timeout=5)
        await msgs[0].ack()
        ckv = await controller.js.key_value(NS.control_bucket)
        await read_records(ckv, ["acme.prod.ctl"])

        js = controller.nc.jetstream(timeout=DENY_TIMEOUT)
        await assert_denied(
            js.publish(kv_subject(NS.checkpoints_bucket, "acme.prod.ctl.i1"), b"{}"),
            "write checkpoints",
            "$KV.mesh_checkpoints.acme.prod.ctl.i1",
        )
    finally:
        await controller.close()


# -------------------------------------------------------------------------------------------
# auditor
# -------------------------------------------------------------------------------------------


async def test_auditor_reads_audit_only(secure_server: SecureServer) -> None:
    op = await secure_server.connect("operator")
    await publish_event(
        op.js, NS, AuditEvent(type=EventType.KILL, target="agent://acme/prod/aud", actor="operator")
    )
    await op.close()

    auditor = await secure_server.connect("auditor")
    try:
        info = await auditor.js.stream_info(AUDIT)
        assert info.state.messages >= 1
        first = await auditor.js.get_msg(AUDIT, seq=info.state.first_seq, direct=True)
        decode(AuditEvent, first.data)
        psub = await auditor.js.pull_subscribe(
            "mesh.audit.acme.prod.aud.>", durable="siem-export", stream=AUDIT
        )
        [msg] = await psub.fetch(1, timeout=5)
        assert decode(AuditEvent, msg.data).target == "agent://acme/prod/aud"
        await msg.ack()
        osub = await auditor.js.subscribe("mesh.audit.acme.prod.aud.>", ordered_consumer=True)
        assert decode(AuditEvent, (await osub.next_msg(timeout=5)).data).type is EventType.KILL
        await osub.unsubscribe()

        js = auditor.nc.jetstream(timeout=DENY_TIMEOUT)
        # an auditor trying to kill
        await assert_denied(
            js.publish(
                kv_subject(NS.control_bucket, "acme.prod.aud"),
                kill_record("agent://acme/prod/aud", "auditor"),
            ),
            "write kill records",
            "$KV.mesh_control.acme.prod.aud",
        )
        # ... to read anything but audit
        akv_subject = f"$JS.API.DIRECT.GET.KV_{NS.control_bucket}.$KV.{NS.control_bucket}.acme.prod.aud"
        await assert_denied(
            js.get_last_msg(f"KV_{NS.control_bucket}", f"$KV.{NS.control_bucket}.acme.prod.aud", direct=True),
            "read kill records",
            akv_subject,
        )
        await assert_denied(
            js.stream_info(f"KV_{NS.checkpoints_bucket}"),
            "read checkpoints",
            f"$JS.API.STREAM.INFO.KV_{NS.checkpoints_bucket}",
        )
        # ... to write the audit log
        with pytest.raises(PermissionDenied):
            await publish_event(
                js,
                NS,
                AuditEvent(type=EventType.RESUME, target="agent://acme/prod/aud"),
                timeout=DENY_TIMEOUT,
                attempts=1,
            )
        await assert_subscribe_denied(auditor, "mesh.hb.>")
        await assert_subscribe_denied(auditor, "mesh.ctl.>")
    finally:
        await auditor.close()


@pytest.mark.parametrize("user", ["admin", "agent", "operator", "controller", "auditor"])
async def test_nobody_can_forge_the_control_republish(secure_server: SecureServer, user: str) -> None:
    """Only nats-server's own republish may publish on ``mesh.ctl.>``: a forged message with a high
    ``Nats-Sequence`` and ``KV-Operation: DEL`` would otherwise resume a killed agent."""
    conn = await secure_server.connect(user)
    try:
        natserrors._VIOLATIONS.clear()
        subject = f"mesh.ctl.acme.prod.forged-{user}"
        await conn.nc.publish(subject, b"", headers={"Nats-Sequence": "999999999", "KV-Operation": "DEL"})
        await conn.nc.flush()
        await eventually(lambda: recent_permission_violation(subject), what=f"{user} refused on {subject}")
    finally:
        await conn.close()

"""Roles enforced by nats-server itself: each role connects to a server running ``nats.conf``.

Every allowed operation is performed for real; every forbidden one must fail with the server's
permissions error (``mesh.errors.PermissionDenied`` once it goes through our error mapping), and
must leave no trace: the record is not written, the stream is not deleted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import nats.errors
import pytest
from nats.js.api import StreamConfig

from mesh.errors import AuthenticationFailed, MeshError, PermissionDenied
from mesh.protocol.codec import decode, encode
from mesh.protocol.models import AuditEvent, Checkpoint, EventType, InstanceStatus, KillRecord, Status, utcnow
from mesh.protocol.subjects import Namespace
from mesh.runtime.settings import Settings
from mesh.transport import natserrors
from mesh.transport.audit import publish_event
from mesh.transport.connection import Connection, recent_permission_violation, translate_error
from mesh.transport.control import read_records
from mesh.transport.provision import ProvisionOptions, bucket_configs, provision

from .conftest import SecureServer

pytestmark = pytest.mark.timeout(120)

NS = Namespace("mesh")
DENY_TIMEOUT = 0.5  # a denied request is never answered; don't wait long for nothing
AUDIT = NS.audit_stream


async def eventually(check: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def through_mesh(aw: Awaitable[Any], operation: str, subject: str = "") -> Any:
    """Run a raw nats-py call the way mesh code does: errors go through ``translate_error``."""
    try:
        return await aw
    except Exception as exc:
        raise translate_error(exc, operation, subject=subject, timeout=DENY_TIMEOUT) from exc


async def assert_denied(
    aw: Awaitable[Any], operation: str, subject: str, *, fresh: bool = True
) -> PermissionDenied:
    """The call fails, and it fails because the server refused ``subject`` to this user."""
    if fresh:
        natserrors._VIOLATIONS.clear()
    with pytest.raises(PermissionDenied) as info:
        await through_mesh(aw, operation, subject)
    assert subject.lower() in info.value.detail.lower()
    assert str(info.value) == f"permission denied: this user may not {operation}"
    return info.value


async def assert_subscribe_denied(conn: Any, subject: str) -> None:
    natserrors._VIOLATIONS.clear()
    received: list[Any] = []

    async def cb(msg: Any) -> None:
        received.append(msg)

    sub = await conn.nc.subscribe(subject, cb=cb)
    await conn.nc.flush()
    await eventually(lambda: recent_permission_violation(subject), what=f"subscribe {subject} denied")
    await sub.unsubscribe()


def kv_subject(bucket: str, key: str) -> str:
    return f"$KV.{bucket}.{key}"


def kill_record(target: str, actor: str) -> bytes:
    return encode(KillRecord(target=target, actor=actor, reason="permission test"))


def status_record(uri: str, instance: str) -> bytes:
    now = utcnow()
    return encode(
        InstanceStatus(
            agent_uri=uri,
            instance=instance,
            status=Status.ACTIVE,
            first_seen=now,
            last_seen=now,
            last_change=now,
        )
    )


async def audit_count(secure: SecureServer) -> int:
    conn = await secure.connect("auditor")
    try:
        info = await conn.js.stream_info(AUDIT)
        return info.state.messages
    finally:
        await conn.close()


# -------------------------------------------------------------------------------------------
# authentication
# -------------------------------------------------------------------------------------------


async def test_wrong_password_and_no_credentials_are_refused(secure_server: SecureServer) -> None:
    with pytest.raises(AuthenticationFailed):
        await secure_server.connect("operator", password="not-the-password")
    with pytest.raises(AuthenticationFailed):
        await secure_server.connect("nobody", password="whatever")
    with pytest.raises(AuthenticationFailed):
        await Connection.open(Settings(nats_url=secure_server.url, connect_timeout=5.0))


async def test_admin_provisions_idempotently_and_cannot_tamper(secure_server: SecureServer) -> None:
    conn = await secure_server.connect("admin")
    try:
        result = await provision(conn.js, conn.ns, ProvisionOptions())
        assert not result.created
        assert sorted(result.existing) == sorted(
            [kv.bucket for kv in bucket_configs(NS, ProvisionOptions())] + [AUDIT]
        )
        js = conn.nc.jetstream(timeout=DENY_TIMEOUT)
        await assert_denied(
            js.delete_stream(AUDIT), "delete the audit stream", f"$JS.API.STREAM.DELETE.{AUDIT}"
        )
        await assert_denied(js.purge_stream(AUDIT), "purge the audit stream", f"$JS.API.STREAM.PURGE.{AUDIT}")
        # admin may not write kill records either: provisioning is not operating
        await assert_denied(
            js.publish(
                kv_subject(NS.control_bucket, "acme.prod.mailer"),
                kill_record("agent://acme/prod/mailer", "admin"),
            ),
            "write kill records",
            kv_subject(NS.control_bucket, "acme.prod.mailer"),
        )
    finally:
        await conn.close()


# -------------------------------------------------------------------------------------------
# agent
# -------------------------------------------------------------------------------------------


async def test_agent_allowed_operations(secure_server: SecureServer) -> None:
    agent = await secure_server.connect("agent")
    operator = await secure_server.connect("operator")
    controller = await secure_server.connect("controller")
    try:
        # heartbeats reach the controller
        beats: list[Any] = []

        async def on_beat(msg: Any) -> None:
            beats.append(msg)

        await controller.nc.subscribe(NS.heartbeat_wildcard, cb=on_beat)
        await controller.nc.flush()

        async def beat() -> bool:  # core NATS is at-most-once: heartbeat until one arrives
            await agent.nc.publish(
                "mesh.hb.acme.prod.perm-hb.i1", b'{"agent_uri":"agent://acme/prod/perm-hb","instance":"i1"}'
            )
            await agent.nc.flush()
            await asyncio.sleep(0.1)
            return bool(beats)

        deadline = time.monotonic() + 30
        while not await beat():
            assert time.monotonic() < deadline, "heartbeat never delivered"

        # the push: subscribe to the control subjects, then the operator kills
        pushed: list[Any] = []

        async def on_ctl(msg: Any) -> None:
            pushed.append(msg)

        await agent.nc.subscribe("mesh.ctl.acme.prod.perm-agent", cb=on_ctl)
        await agent.nc.flush()
        okv = await operator.js.key_value(NS.control_bucket)
        await okv.put("acme.prod.perm-agent", kill_record("agent://acme/prod/perm-agent", "operator"))
        await eventually(lambda: pushed, what="republished kill record")

        # reading kill records (direct get through mesh.transport.control)
        akv = await agent.js.key_value(NS.control_bucket)
        [update] = await read_records(akv, ["acme.prod.perm-agent"])
        assert update.in_force and update.record is not None and update.record.actor == "operator"
        [missing] = await read_records(akv, ["acme.prod.nobody"])
        assert not missing.in_force

        # lifecycle events, with ack, through mesh.transport.audit
        for etype in (EventType.STARTED, EventType.HALTED, EventType.STOPPED):
            ack = await publish_event(
                agent.js, NS, AuditEvent(type=etype, agent_uri="agent://acme/prod/perm-agent", instance="i1")
            )
            assert ack.stream == AUDIT

        # checkpoints: write and read back
        ckv = await agent.js.key_value(NS.checkpoints_bucket)
        cp = Checkpoint(agent_uri="agent://acme/prod/perm-agent", instance="i1", seq=3, state={"batch": 7})
        await ckv.put("acme.prod.perm-agent.i1", encode(cp))
        entry = await ckv.get("acme.prod.perm-agent.i1")
        assert decode(Checkpoint, entry.value).state == {"batch": 7}

        # quota leases: a request to the controller, answered to the agent's inbox
        async def grant(msg: Any) -> None:
            await msg.respond(b'{"outcome":"granted"}')

        await controller.nc.subscribe(NS.quota_wildcard, cb=grant)
        await controller.nc.flush()
        answer = await agent.nc.request("mesh.quota.acme.prod.perm-agent.i1", b"{}", timeout=5)
        assert answer.data == b'{"outcome":"granted"}'

        await okv.delete("acme.prod.perm-agent")
    finally:
        for c in (agent, operator, controller):
            await c.close()


async def test_agent_cannot_kill_resume_or_touch_status(secure_server: SecureServer) -> None:
    agent = await secure_server.connect("agent")
    operator = await secure_server.connect("operator")
    try:
        js = agent.nc.jetstream(timeout=DENY_TIMEOUT)
        key = "acme.prod.victim"

        # kill: a KV put on the control bucket
        await assert_denied(
            js.publish(kv_subject(NS.control_bucket, key), kill_record("agent://acme/prod/victim", "agent")),
            "write kill records",
            kv_subject(NS.control_bucket, key),
        )
        # kill everything, through nats-py's own KV API
        akv = await js.key_value(NS.control_bucket)  # short request timeout for the denied writes
        await assert_denied(
            akv.put("_._._", kill_record("agent://*/*/*", "agent")), "write kill records", "_._._"
        )

        # resume itself: the operator kills it, the agent tries to delete (and purge) the record
        okv = await operator.js.key_value(NS.control_bucket)
        await okv.put("acme.prod.self", kill_record("agent://acme/prod/self", "operator"))
        await assert_denied(akv.delete("acme.prod.self"), "delete kill records", "acme.prod.self")
        await assert_denied(akv.purge("acme.prod.self"), "delete kill records", "acme.prod.self")
        [still] = await read_records(akv, ["acme.prod.self"])
        assert still.in_force, "the agent resumed itself"

        # overwrite another agent's status (the controller's bucket)
        status_subject = kv_subject(NS.instances_bucket, "acme.prod.other.i1")
        await assert_denied(
            js.publish(status_subject, status_record("agent://acme/prod/other", "i1")),
            "write status",
            status_subject,
        )
        # take the controller lease
        await assert_denied(
            js.publish(kv_subject(NS.leases_bucket, "controller"), b"{}"),
            "write leases",
            "$KV.mesh_leases.controller",
        )
        # grant itself a budget: write a quota ledger
        ledger_subject = kv_subject(NS.quota_bucket, "cap.emails.total.acme.prod.victim")
        await assert_denied(js.publish(ledger_subject, b"{}"), "write quota ledgers", ledger_subject)
        # forge an operator's kill / resume event, or a controller transition
        for forged in (EventType.KILL, EventType.RESUME, EventType.LOST):
            with pytest.raises(PermissionDenied):
                await publish_event(
                    js,
                    NS,
                    AuditEvent(type=forged, target="agent://acme/prod/victim"),
                    timeout=DENY_TIMEOUT,
                    attempts=1,
                )
        # snoop on every heartbeat, or on the audit stream
        await assert_subscribe_denied(agent, "mesh.hb.>")
        await assert_subscribe_denied(agent, "mesh.audit.>")
        # open a consumer (on the audit stream or the control bucket)
        await assert_denied(
            js.pull_subscribe("mesh.audit.>", durable="agent-reader", stream=AUDIT),
            "read the audit stream",
            "$JS.API.CONSUMER.",
        )

        # nothing it tried left a trace
        [victim, everything] = await read_records(okv, [key, "_._._"])
        assert not victim.in_force and not everything.in_force
        ikv = await operator.js.key_value(NS.instances_bucket)
        with pytest.raises(nats.js.errors.KeyNotFoundError):
            await ikv.get("acme.prod.other.i1")
        await okv.delete("acme.prod.self")
    finally:
        await agent.close()
        await operator.close()


# -------------------------------------------------------------------------------------------
# the audit stream is append-only for every user
# -------------------------------------------------------------------------------------------


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

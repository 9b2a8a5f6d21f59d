"""Roles enforced by nats-server: what the agent user may and may not do."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import nats.errors
import pytest

from mesh.errors import PermissionDenied
from mesh.protocol.codec import decode, encode
from mesh.protocol.models import AuditEvent, Checkpoint, EventType
from mesh.transport.audit import publish_event
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
            # sleep-ok: the poll interval: `while not await beat()` re-sends until a heartbeat arrives
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

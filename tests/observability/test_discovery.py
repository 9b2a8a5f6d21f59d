"""Service discovery checked by a client that speaks the NATS micro protocol on its own.

Plain NATS requests to ``$SRV.PING|INFO|STATS`` (all, by name, by id), and every answer checked
against the ``io.nats.micro.v1`` schemas of the micro specification (ADR-32) as written here,
not through nats-py's ``nats.micro`` (which the controller uses).
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime
from typing import Any

import nats
import nats.errors
import pytest

from mesh.protocol.models import Status
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection
from tests.integration.controller_helpers import eventually, fast_options, heartbeat, running_controller, send

pytestmark = pytest.mark.timeout(60)

URI = "agent://acme/prod/mailer"
NAME = re.compile(r"^[A-Za-z0-9\-_]+$")
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$")
IDENTITY = {"type": str, "name": str, "id": str, "version": str, "metadata": dict}
INFO_ENDPOINT = {"name": str, "subject": str, "queue_group": str}
STATS_ENDPOINT = {
    "name": str,
    "subject": str,
    "queue_group": str,
    "num_requests": int,
    "num_errors": int,
    "last_error": str,
    "processing_time": int,
    "average_processing_time": int,
}


def has_fields(body: dict[str, Any], fields: dict[str, type]) -> None:
    for field, kind in fields.items():
        assert field in body, f"{field} missing from {body}"
        assert isinstance(body[field], kind), f"{field} is {type(body[field]).__name__}, not {kind.__name__}"


def check_identity(body: dict[str, Any], kind: str) -> None:
    has_fields(body, IDENTITY)
    assert body["type"] == f"io.nats.micro.v1.{kind}_response"
    assert NAME.match(body["name"]) and SEMVER.match(body["version"]) and body["id"]


async def ask(nc: nats.NATS, subject: str, prefix: str, wait: float = 0.5) -> list[dict[str, Any]]:
    """Every answer to one request, from services of our prefix (others may share the server)."""
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    await nc.publish(subject, b"", reply=inbox)
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + wait
    while (left := deadline - time.monotonic()) > 0:
        try:
            msg = await sub.next_msg(timeout=left)
        except nats.errors.TimeoutError:
            break
        if not msg.data and msg.headers and msg.headers.get("Status") == "503":
            break  # the server's "no responders": nobody listens on that subject
        body = json.loads(msg.data)
        if body.get("metadata", {}).get("prefix") == prefix or "role" in body:
            out.append(body)
    await sub.unsubscribe()
    return out


async def test_ping_info_stats_follow_the_micro_schemas(conn: Connection, settings: Settings) -> None:
    prefix = conn.ns.prefix
    nc = await nats.connect(settings.nats_url, name="independent micro client")
    try:
        async with running_controller(settings, fast_options()):
            await send(conn.nc, conn.ns, heartbeat(URI, "d1", interval=30.0))

            async def pinged() -> list[dict[str, Any]]:
                return await ask(nc, "$SRV.PING", prefix)

            (ping,) = await eventually(pinged, what="a ping answer")
            check_identity(ping, "ping")
            name, sid = ping["name"], ping["id"]
            assert name == "mesh-controller" and ping["metadata"] == {"prefix": prefix}
            for subject in (f"$SRV.PING.{name}", f"$SRV.PING.{name}.{sid}"):
                assert [b["id"] for b in await ask(nc, subject, prefix)] == [sid]
            assert await ask(nc, f"$SRV.PING.{name}.not-this-id", prefix) == []

            (info,) = await ask(nc, f"$SRV.INFO.{name}.{sid}", prefix)
            check_identity(info, "info")
            assert isinstance(info["description"], str) and info["description"]
            (endpoint,) = info["endpoints"]
            has_fields(endpoint, INFO_ENDPOINT)
            assert endpoint["name"] == "status" and endpoint["subject"] == f"{prefix}.controller.status"
            assert endpoint["queue_group"] == "q"

            # the endpoint itself, then STATS counting those requests
            for _ in range(3):
                reply = await nc.request(endpoint["subject"], b"", timeout=5)
                assert json.loads(reply.data)["prefix"] == prefix

            async def stats() -> dict[str, Any] | None:
                (body,) = await ask(nc, f"$SRV.STATS.{name}", prefix)
                data = body["endpoints"][0]["data"]
                return body if data["role"] == "active" and data["instances"]["active"] == 1 else None

            body = await eventually(stats, what="STATS of the active controller with its instance")
            check_identity(body, "stats")
            assert body["id"] == sid
            datetime.strptime(body["started"], "%Y-%m-%dT%H:%M:%S.%fZ")  # RFC 3339, UTC
            (ep,) = body["endpoints"]
            has_fields(ep, STATS_ENDPOINT)
            assert ep["num_requests"] == 3 and ep["num_errors"] == 0 and ep["last_error"] == ""
            assert ep["processing_time"] > 0 and ep["average_processing_time"] > 0
            data = ep["data"]
            assert data["instances"] == {**{s.value: 0 for s in Status}, "active": 1}
            assert data["lease_holder"] == data["holder"]
            # the controller's figures stay at the top level too, as before nats.micro
            assert body["data"] == data
    finally:
        await nc.close()


async def test_every_controller_is_discovered_and_one_answers_the_endpoint(
    conn: Connection, settings: Settings
) -> None:
    prefix = conn.ns.prefix
    nc = await nats.connect(settings.nats_url, name="independent micro client")
    try:
        async with (
            running_controller(settings, fast_options()) as first,
            running_controller(settings, fast_options(), wait_active=False) as second,
        ):

            async def both() -> list[dict[str, Any]] | None:
                answers = await ask(nc, "$SRV.PING.mesh-controller", prefix)
                return answers if len(answers) == 2 else None

            pings = await eventually(both, what="both controllers answering PING")
            assert len({p["id"] for p in pings}) == 2

            async def roles() -> set[str] | None:
                got = {b["data"]["role"] for b in await ask(nc, "$SRV.STATS", prefix)}
                return got if got == {"active", "standby"} else None

            await eventually(roles, what="one active and one standby in STATS")
            assert {first.role, second.role} == {"active", "standby"}
            # the endpoint is in the micro queue group: each request gets exactly one answer
            for _ in range(5):
                answers = await ask(nc, f"{prefix}.controller.status", prefix, wait=0.3)
                assert len(answers) == 1 and answers[0]["prefix"] == prefix
    finally:
        await nc.close()

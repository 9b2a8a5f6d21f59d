"""Hostile lease requests at a real controller: garbage is counted and ignored, the service goes on,
and an instance can never give back another instance's grant."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import nats.errors
import pytest

from mesh.client.operator import AsyncMesh
from mesh.protocol import quota
from mesh.protocol.codec import decode, encode
from mesh.protocol.leasewire import LeaseReply, LeaseRequest, Release
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection
from mesh.transport.server import EmbeddedServer
from tests.integration.controller_helpers import eventually, fast_options, running_controller

pytestmark = pytest.mark.timeout(120)

URI = "agent://acme/prod/mailer"
SUBJECT = "{prefix}.quota.acme.prod.mailer.{instance}"


@pytest.fixture(scope="module")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    server = EmbeddedServer(tmp_path_factory.mktemp("nats-hostile-quota"), port=0)
    server.start()
    yield server
    server.stop()


async def ask(conn: Connection, instance: str, body: bytes, timeout: float = 0.5) -> LeaseReply | None:
    subject = SUBJECT.format(prefix=conn.ns.prefix, instance=instance)
    try:
        msg = await conn.nc.request(subject, body, timeout=timeout)
    except nats.errors.TimeoutError:
        return None
    return decode(LeaseReply, msg.data)


def request(instance: str, **kw: object) -> bytes:
    return encode(LeaseRequest.model_validate({"agent_uri": URI, "instance": instance, **kw}))


async def test_garbage_is_counted_and_a_grant_cannot_be_given_back_by_another_instance(
    conn: Connection, settings: Settings
) -> None:
    async with running_controller(settings, fast_options(policy_reload_every=0.2)) as ctl:
        async with AsyncMesh(settings) as mesh:
            await mesh.set_policy("cap", URI, ["emails<=100"])

        async def loaded() -> bool:
            return ctl.stats.policies == 1

        await eventually(loaded, what="the policy loaded")
        good = await ask(conn, "i1", request("i1", counter="emails", want=1, request_id="r1"), timeout=5)
        assert good is not None and good.outcome == "granted" and good.amount == 50

        garbage = [
            ("i1", b"{not json"),
            ("i1", b""),
            ("i1", json.dumps({"agent_uri": URI, "instance": "i1", "want": -1}).encode()),
            ("i1", json.dumps({"agent_uri": URI, "instance": "i1", "want": float("nan")}).encode()),
            ("i1", json.dumps({"agent_uri": "agent://acme/prod/other", "instance": "i1"}).encode()),
            ("i2", request("i1", counter="emails", want=1)),  # the body names another instance
            ("i1", json.dumps({"agent_uri": URI, "instance": "i1", "releases": [{}] * 300}).encode()),
        ]
        for instance, body in garbage:
            assert await ask(conn, instance, body) is None  # never answered
        # i2 tries to give back i1's lease (which would free 50 units that i1 may still spend)
        theft = request("i2", releases=[Release(counter="emails", grant_id="r1", unspent=50).model_dump()])
        answered = await ask(conn, "i2", theft, timeout=5)
        assert answered is not None and answered.outcome == "released"
        # the service still answers, and the ledger still charges i1's grant in full
        again = await ask(conn, "i3", request("i3", counter="emails", want=1, request_id="r3"), timeout=5)
        assert again is not None and again.outcome == "granted"
        assert ctl.stats.bad_lease_requests == len(garbage)
        kv = await conn.js.key_value(conn.ns.quota_bucket)
        ledger = decode(quota.Ledger, (await kv.get("cap.emails.total.acme.prod.mailer")).value or b"")
        assert quota.counted(ledger, time.time()) == 50 + again.amount

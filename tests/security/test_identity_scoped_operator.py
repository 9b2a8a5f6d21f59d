"""An operator scoped to one org uses the operator API for real: list, status, kill with its report."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from agent_sdk import AsyncAgent
from mesh.client.operator import AsyncMesh
from mesh.errors import PermissionDenied
from mesh.protocol.codec import encode
from mesh.protocol.identity import Identity, Role
from mesh.protocol.models import EventType, InstanceStatus, Status, utcnow
from mesh.protocol.target import parse_agent_uri
from tests.integration.sdk_helpers import await_until
from tests.security.identity_support import IdentityServer, identity_server_fixture

ACME = "agent://acme/prod/mailer"
GLOBEX = "agent://globex/prod/mailer"


@pytest.fixture(scope="module")
def ident(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdentityServer]:
    yield from identity_server_fixture(tmp_path_factory.mktemp("identity-scoped-nats"))


async def _record_statuses(ident: IdentityServer) -> None:
    """What a controller records for one acme and one globex instance."""
    conn = await ident.connect_static("controller")
    try:
        now = utcnow()
        for uri, instance in ((ACME, "a1"), (GLOBEX, "g1")):
            status = InstanceStatus(
                agent_uri=uri,
                instance=instance,
                status=Status.ACTIVE,
                first_seen=now,
                last_seen=now,
                last_change=now,
            )
            key = conn.ns.instance_key(parse_agent_uri(uri), instance)
            await conn.js.publish(f"$KV.{conn.ns.instances_bucket}.{key}", encode(status))
    finally:
        await conn.close()


async def test_an_org_scoped_operator_lists_kills_and_reads_its_own_org_only(ident: IdentityServer) -> None:
    await _record_statuses(ident)
    _, op_token = await ident.issue(Identity(role=Role.OPERATOR, scope="agent://acme/*/*", name="alice"))
    _, agent_token = await ident.issue(Identity(role=Role.AGENT, scope=ACME, instance="a1"))
    async with AsyncAgent(
        ACME, instance="a1", settings=ident.token_settings(agent_token), hard_kill=False, on_kill="pause"
    ) as agent:

        async def work() -> None:
            while True:
                await agent.sleep(0.05)  # a safe point: parks here on the kill, and acknowledges

        worker = asyncio.ensure_future(work())
        async with AsyncMesh(ident.token_settings(op_token, actor="alice"), name="test-alice") as mesh:
            # The scans go through a consumer named after the credential (the multi-get is refused).
            listed = await mesh.list_instances("agent://acme/*/*")
            assert [(s.agent_uri, s.instance) for s in listed] == [(ACME, "a1")]
            assert (await mesh.status(ACME)).instances[0].instance == "a1"
            report = await mesh.kill(ACME, reason="scoped operator", wait=10)
            assert [(r.agent_uri, r.instance) for r in report.instances] == [(ACME, "a1")]
            assert report.expected == 1 and report.missing == []
            again = await mesh.list_instances("agent://acme/*/*")  # the consumer was cleaned up
            assert [s.instance for s in again] == ["a1"]
            # No controller runs here, so the stored status never says "paused": the resume does
            # not know whom to wait for. The agent itself shows the resume went through.
            resumed = await mesh.resume(ACME, wait=0.5)
            assert resumed.cleared and resumed.still_held_by == []
            await await_until(lambda: not agent.killed, what="the agent resumed")
        worker.cancel()


async def test_an_org_scoped_operator_reads_the_audit_events_of_its_org_and_is_refused_the_rest(
    ident: IdentityServer,
) -> None:
    _, alice = await ident.issue(Identity(role=Role.OPERATOR, scope="agent://acme/*/*", name="alice"))
    _, gina = await ident.issue(Identity(role=Role.OPERATOR, scope="agent://globex/*/*", name="gina"))
    async with AsyncMesh(ident.token_settings(gina, actor="gina"), name="test-gina") as mesh:
        await mesh.kill(GLOBEX, reason="globex's own", wait=0)
    async with AsyncMesh(ident.token_settings(alice, actor="alice"), name="test-alice") as mesh:
        await mesh.kill(ACME, instance="nobody", reason="acme's own", wait=0)
        # Through the consumer named after its credential, filtered inside its scope.
        seen = [e async for e in mesh.events("agent://acme/*/*")]
        assert any(e.type is EventType.KILL and e.reason == "acme's own" for e in seen)
        assert all((e.agent_uri or e.target or "").startswith("agent://acme/") for e in seen), seen
        again = [e async for e in mesh.events("agent://acme/prod/mailer")]  # the consumer was removed
        assert [e.reason for e in again if e.type is EventType.KILL][-1] == "acme's own"
        # Wider than its scope: refused by the server, and said so at once.
        with pytest.raises(PermissionDenied, match="scoped credential reads only inside its scope"):
            _ = [e async for e in mesh.events("agent://*/*/*")]
    async with AsyncMesh(ident.token_settings(gina, actor="gina"), name="test-gina") as mesh:
        theirs = [e async for e in mesh.events("agent://globex/*/*")]
        assert [e.reason for e in theirs if e.type is EventType.KILL] == ["globex's own"]

"""Every forgery of issue 20, tried with a real agent credential against nats-server running
nats-identity.conf and the auth callout: refused by the server, with nothing changed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import nats.errors
import pytest
from nats.aio.msg import Msg

from agent_sdk import AgentKilled, AsyncAgent
from mesh.client.operator import AsyncMesh
from mesh.errors import AuthenticationFailed, PermissionDenied
from mesh.protocol.codec import encode
from mesh.protocol.identity import Identity, Role
from mesh.protocol.models import AuditEvent, Checkpoint, EventType, KillRecord
from mesh.transport import natserrors
from mesh.transport.connection import Connection, recent_permission_violation
from tests.integration.sdk_helpers import await_until
from tests.security.identity_support import IdentityServer, identity_server_fixture

A = "agent://acme/prod/mailer"
B = "agent://acme/prod/biller"
T = 1.0  # request timeout for operations the server refuses (they are never answered)


@pytest.fixture(scope="module")
def ident(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdentityServer]:
    yield from identity_server_fixture(tmp_path_factory.mktemp("identity-nats"))


@pytest.fixture
async def tokens(ident: IdentityServer) -> dict[str, str]:
    out: dict[str, str] = {}
    for label, identity in {
        "a": Identity(role=Role.AGENT, scope=A, instance="a1"),
        "b": Identity(role=Role.AGENT, scope=B, instance="b1"),
        "globex": Identity(role=Role.AGENT, scope="agent://globex/prod/mailer", instance="g1"),
        "root": Identity(role=Role.OPERATOR, scope="agent://*/*/*", name="root"),
        "acme-op": Identity(role=Role.OPERATOR, scope="agent://acme/*/*", name="alice"),
    }.items():
        _, out[label] = await ident.issue(identity)
    return out


@pytest.fixture
async def watcher(ident: IdentityServer) -> AsyncIterator[tuple[Connection, list[Msg]]]:
    """The controller (static user) watching heartbeats and every audit subject."""
    conn = await ident.connect_static("controller")
    seen: list[Msg] = []

    async def on_msg(msg: Msg) -> None:
        seen.append(msg)

    await conn.nc.subscribe("mesh.hb.>", cb=on_msg)
    await conn.nc.subscribe("mesh.audit.>", cb=on_msg)
    await conn.nc.flush()
    yield conn, seen
    await conn.close()


async def refused(subject: str) -> str:
    """The server's "Permissions Violation" for ``subject``, once it arrives."""
    return str(await await_until(lambda: recent_permission_violation(subject), what=f"refusal of {subject}"))


async def kv_put(conn: Connection, bucket: str, key: str, value: bytes) -> int:
    """What ``KeyValue.put`` sends, with a short timeout for the refused cases."""
    return int((await conn.js.publish(f"$KV.{bucket}.{key}", value, timeout=T)).seq)


async def kv_delete(conn: Connection, bucket: str, key: str) -> None:
    await conn.js.publish(f"$KV.{bucket}.{key}", b"", headers={"KV-Operation": "DEL"}, timeout=T)


async def direct_get(conn: Connection, stream: str, subject: str) -> Msg:
    """The last message on ``subject``: the direct get whose API subject names what it reads."""
    return await conn.nc.request(f"$JS.API.DIRECT.GET.{stream}.{subject}", b"", timeout=T)


NEVER_ANSWERED = nats.errors.TimeoutError  # a refused publish or request is dropped by the server


def event(kind: EventType, uri: str, instance: str) -> AuditEvent:
    return AuditEvent(type=kind, target=uri, instance=instance, actor=uri)


async def test_agent_cannot_forge_another_agents_halt_or_heartbeat(
    ident: IdentityServer, tokens: dict[str, str], watcher: tuple[Connection, list[Msg]]
) -> None:
    _, seen = watcher
    conn = await ident.connect_token(tokens["a"])
    try:
        forged = {
            "mesh.audit.acme.prod.biller.b1.halted": encode(event(EventType.HALTED, B, "b1")),
            "mesh.hb.acme.prod.biller.b1": b"{}",
            "mesh.audit.acme.prod.mailer.a2.halted": encode(event(EventType.HALTED, A, "a2")),  # a sibling
            "mesh.audit.acme.prod.mailer.a1.kill": encode(event(EventType.KILL, A, "a1")),
        }
        for subject, payload in forged.items():
            await conn.nc.publish(subject, payload)
        # its own heartbeat, after the forgeries on the same connection: once it is seen, they
        # would have been seen too
        await conn.nc.publish("mesh.hb.acme.prod.mailer.a1", b"{}")
        await conn.nc.flush()
        await await_until(lambda: any(m.subject == "mesh.hb.acme.prod.mailer.a1" for m in seen))
        assert not [m.subject for m in seen if m.subject in forged]
        for subject in forged:
            assert "permissions violation" in (await refused(subject)).lower()
        # and through JetStream: no pub ack, nothing stored
        with pytest.raises(NEVER_ANSWERED):
            await conn.js.publish("mesh.audit.acme.prod.biller.b1.halted", b"{}", timeout=T)
        await refused("mesh.audit.acme.prod.biller.b1.halted")
        admin = await ident.connect_static("admin")
        try:
            with pytest.raises(Exception, match=r"(?i)no message found|not found"):
                await admin.js.get_last_msg("MESH_AUDIT", "mesh.audit.acme.prod.biller.b1.halted")
        finally:
            await admin.close()
    finally:
        await conn.close()


async def test_agent_cannot_touch_another_agents_checkpoint(
    ident: IdentityServer, tokens: dict[str, str]
) -> None:
    b = await ident.connect_token(tokens["b"])
    a = await ident.connect_token(tokens["a"])
    bucket, stream = "mesh_checkpoints", "KV_mesh_checkpoints"
    theirs = "$KV.mesh_checkpoints.acme.prod.biller.b1"
    try:
        original = encode(Checkpoint(agent_uri=B, instance="b1", seq=1, state={"step": 7}))
        await kv_put(b, bucket, "acme.prod.biller.b1", original)
        mine = encode(Checkpoint(agent_uri=A, instance="a1", seq=1, state={}))
        assert await kv_put(a, bucket, "acme.prod.mailer.a1", mine) > 0  # its own: allowed
        assert (await direct_get(a, stream, "$KV.mesh_checkpoints.acme.prod.mailer.a1")).data == mine
        with pytest.raises(NEVER_ANSWERED):
            await kv_put(a, bucket, "acme.prod.biller.b1", b'{"step": 0}')
        await refused(theirs)
        with pytest.raises(NEVER_ANSWERED):
            await kv_delete(a, bucket, "acme.prod.biller.b1")
        with pytest.raises(NEVER_ANSWERED):  # reading it is refused too
            await direct_get(a, stream, theirs)
        await refused(f"$JS.API.DIRECT.GET.{stream}.{theirs}")
        assert (await direct_get(b, stream, theirs)).data == original  # unchanged
    finally:
        await a.close()
        await b.close()


async def test_agent_reads_only_the_kill_records_that_can_match_it(
    ident: IdentityServer, tokens: dict[str, str]
) -> None:
    root = await ident.connect_token(tokens["root"])
    a = await ident.connect_token(tokens["a"])
    bucket, stream = "mesh_control", "KV_mesh_control"
    try:
        await kv_put(
            root, bucket, "globex.prod.mailer", encode(KillRecord(target="agent://globex/prod/mailer"))
        )
        await kv_put(
            root, bucket, "acme._._", encode(KillRecord(target="agent://acme/*/*", reason="org-wide"))
        )
        own = await direct_get(a, stream, "$KV.mesh_control.acme._._")  # a record that can match it
        assert b"org-wide" in own.data
        with pytest.raises(NEVER_ANSWERED):
            await direct_get(a, stream, "$KV.mesh_control.globex.prod.mailer")
        await refused(f"$JS.API.DIRECT.GET.{stream}.$KV.mesh_control.globex.prod.mailer")
        # the multi-get (keys in the body) and wide subscriptions
        with pytest.raises(NEVER_ANSWERED):
            await a.nc.request(
                f"$JS.API.DIRECT.GET.{stream}", b'{"multi_last": ["$KV.mesh_control.>"]}', timeout=T
            )
        await refused(f"$JS.API.DIRECT.GET.{stream}")
        for wide in ("mesh.ctl.>", "_INBOX.>", "mesh.audit.>"):
            await a.nc.subscribe(wide)
            await a.nc.flush()
            await refused(wide)
        # nor can it kill or resume
        with pytest.raises(NEVER_ANSWERED):
            await kv_delete(a, bucket, "acme._._")
        await refused("$KV.mesh_control.acme._._")
        assert b"org-wide" in (await direct_get(root, stream, "$KV.mesh_control.acme._._")).data
        await kv_delete(root, bucket, "acme._._")
        await kv_delete(root, bucket, "globex.prod.mailer")
    finally:
        await a.close()
        await root.close()


async def test_the_sdk_runs_under_its_own_credential_and_is_killed(
    ident: IdentityServer, tokens: dict[str, str]
) -> None:
    """The real agent SDK, with nothing but NATS_TOKEN: heartbeats, checkpoints, push kill, ack."""
    settings = ident.token_settings(tokens["a"])
    async with AsyncAgent(
        A, instance="a1", settings=settings, hard_kill=False, heartbeat_interval=0.2
    ) as agent:
        await agent.checkpoint({"step": 1})

        async def work_until_killed() -> None:
            while True:
                await agent.heartbeat()  # a safe point: raises once the kill is observed
                await asyncio.sleep(0.01)  # sleep-ok: paces the work loop between safe points

        async with AsyncMesh(ident.token_settings(tokens["root"], actor="root"), name="test-root") as mesh:
            worker = asyncio.ensure_future(work_until_killed())
            report = await mesh.kill(A, reason="identity test", wait=3)
            with pytest.raises(AgentKilled):
                await asyncio.wait_for(worker, 30)
            assert [(row.agent_uri, row.instance) for row in report.instances] == [(A, "a1")]
            assert report.instances[0].checkpoint is not None
            await mesh.resume(A, wait=1)


async def test_operator_scoped_to_acme_cannot_act_on_globex(
    ident: IdentityServer, tokens: dict[str, str]
) -> None:
    op = await ident.connect_token(tokens["acme-op"])
    bucket = "mesh_control"
    try:
        assert (
            await kv_put(op, bucket, "acme.prod.mailer", encode(KillRecord(target=A, reason="in scope"))) > 0
        )
        await kv_delete(op, bucket, "acme.prod.mailer")
        for key in ("globex.prod.mailer", "_._._", "_.prod.mailer"):
            with pytest.raises(NEVER_ANSWERED):
                await kv_put(op, bucket, key, encode(KillRecord(target="agent://globex/prod/mailer")))
            await refused(f"$KV.mesh_control.{key}")
        with pytest.raises(NEVER_ANSWERED):  # resume (delete) of a globex record
            await kv_delete(op, bucket, "globex.prod.biller")
        await refused("$KV.mesh_control.globex.prod.biller")
        with pytest.raises(NEVER_ANSWERED):  # a kill event about globex
            await op.js.publish("mesh.audit.globex.prod.mailer._.kill", b"{}", timeout=T)
        await refused("mesh.audit.globex.prod.mailer._.kill")
        status = "$KV.mesh_instances.globex.prod.mailer.g1"
        with pytest.raises(NEVER_ANSWERED):
            await direct_get(op, "KV_mesh_instances", status)
        await refused(f"$JS.API.DIRECT.GET.KV_mesh_instances.{status}")
        for wide in ("mesh.hb.globex.>", "mesh.audit.globex.>", "mesh.hb.>"):
            await op.nc.subscribe(wide)
            await op.nc.flush()
            await refused(wide)
    finally:
        await op.close()


async def test_bad_and_revoked_credentials_are_refused_with_the_fix(ident: IdentityServer) -> None:
    cred_id, token = await ident.issue(Identity(role=Role.AGENT, scope=A, instance="r1"))
    conn = await ident.connect_token(token)
    await conn.close()
    assert await ident.revoke(cred_id)
    for bad in (token, token[:-2] + "xx", "not-a-mesh-token"):
        with pytest.raises(AuthenticationFailed, match="NATS_TOKEN") as info:
            await ident.connect_token(bad)
        assert "\n" not in str(info.value)
        assert token.split("_")[-1] not in str(info.value)  # the secret never appears in the error


async def test_callout_restart_keeps_connected_agents(
    ident: IdentityServer, tokens: dict[str, str], watcher: tuple[Connection, list[Msg]]
) -> None:
    _, seen = watcher
    conn = await ident.connect_token(tokens["a"])
    try:
        ident.stop_callout()
        with pytest.raises(AuthenticationFailed):
            await ident.connect_token(tokens["b"])  # nobody answers the server: new connects fail
        await conn.nc.publish("mesh.hb.acme.prod.mailer.a1", b'{"after": "callout down"}')
        await conn.nc.flush()
        await await_until(lambda: any(m.data == b'{"after": "callout down"}' for m in seen))
    finally:
        ident.start_callout()
        await conn.close()
    again = await ident.connect_token(tokens["b"])
    await again.close()


async def test_revocation_kicks_a_live_connection_at_once(
    ident: IdentityServer, tokens: dict[str, str]
) -> None:
    """The callout (with the system user) asks the server to drop a revoked credential's connections."""
    cred_id, token = await ident.issue(Identity(role=Role.AGENT, scope=A, instance="k1"))
    conn = await ident.connect_token(token)  # its JWT lasts 900 s: only a kick can end it now
    bystander = await ident.connect_token(tokens["b"])
    try:
        assert await ident.revoke(cred_id)
        await await_until(lambda: not conn.is_connected, what="revoked connection kicked")
        assert bystander.is_connected  # only the revoked credential's connections
        with pytest.raises(AuthenticationFailed):
            await ident.connect_token(token)
    finally:
        await conn.close()
        await bystander.close()


async def test_revocation_cuts_a_live_connection_when_its_jwt_expires(ident: IdentityServer) -> None:
    ident.stop_callout()
    ident.start_callout(ttl=2, kick=False)
    try:
        cred_id, token = await ident.issue(Identity(role=Role.AGENT, scope=A, instance="t1"))
        conn = await ident.connect_token(token)
        try:
            assert await ident.revoke(cred_id)
            # the server ends the connection at the JWT's expiry; the reconnect is refused
            await await_until(lambda: not conn.is_connected, what="revoked connection cut")
            with pytest.raises(AuthenticationFailed):
                await ident.connect_token(token)
        finally:
            await conn.close()
    finally:
        ident.stop_callout()
        ident.start_callout()


async def test_permission_denied_is_one_line(ident: IdentityServer, tokens: dict[str, str]) -> None:
    async with AsyncMesh(ident.token_settings(tokens["acme-op"]), name="test-acme") as mesh:
        with pytest.raises(PermissionDenied) as info:
            await mesh.kill("agent://globex/prod/mailer", wait=0.1)
        assert "\n" not in str(info.value)


async def test_nobody_but_the_callout_sees_the_servers_auth_requests(
    ident: IdentityServer, tokens: dict[str, str]
) -> None:
    """Every connecting client's token travels in these requests: only the callout may read them."""
    conns = [await ident.connect_static(user) for user in ("admin", "controller", "gateway")]
    conns += [await ident.connect_token(tokens[label]) for label in ("a", "root", "acme-op")]
    got: list[Msg] = []

    async def on_msg(msg: Msg) -> None:
        got.append(msg)

    try:
        for conn in conns:
            natserrors._VIOLATIONS.clear()  # each connection's own refusal, not the previous one's
            await conn.nc.subscribe("$SYS.REQ.USER.AUTH", cb=on_msg)
            await conn.nc.subscribe("$SYS.>", cb=on_msg)
            await conn.nc.flush()
            await refused("$SYS.REQ.USER.AUTH")
            await refused("$SYS.>")
        probe = await ident.connect_token(tokens["b"])  # a connect: the server asks the callout
        await probe.close()
        assert got == []
    finally:
        for conn in conns:
            await conn.close()

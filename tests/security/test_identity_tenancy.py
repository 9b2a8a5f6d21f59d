"""Two orgs in one deployment (nats-identity.conf): neither can see or touch the other's agents,
kill records, checkpoints, status or audit events, whichever of its credentials it uses."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass

import nats.errors
import pytest
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from mesh.protocol.codec import encode
from mesh.protocol.identity import Identity, Role, parse_token
from mesh.protocol.models import AuditEvent, Checkpoint, EventType, InstanceStatus, KillRecord, Status, utcnow
from mesh.transport.connection import Connection, recent_permission_violation
from tests.integration.sdk_helpers import await_until
from tests.security.identity_support import IdentityServer, identity_server_fixture

ORGS = ("acme", "globex")
T = 1.0


@dataclass
class Org:
    name: str
    agent: str
    operator: str
    auditor: str

    @property
    def uri(self) -> str:
        return f"agent://{self.name}/prod/mailer"

    @property
    def instance_key(self) -> str:
        return f"{self.name}.prod.mailer.x1"


@pytest.fixture(scope="module")
def ident(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdentityServer]:
    yield from identity_server_fixture(tmp_path_factory.mktemp("tenancy-nats"))


async def _org(ident: IdentityServer, name: str) -> Org:
    uri = f"agent://{name}/prod/mailer"
    scope = f"agent://{name}/*/*"
    _, agent = await ident.issue(Identity(role=Role.AGENT, scope=uri, instance="x1"))
    _, operator = await ident.issue(Identity(role=Role.OPERATOR, scope=scope, name=f"op-{name}"))
    _, auditor = await ident.issue(Identity(role=Role.AUDITOR, scope=scope, name=f"audit-{name}"))
    return Org(name, agent, operator, auditor)


@pytest.fixture(scope="module")
def orgs(ident: IdentityServer) -> dict[str, Org]:
    """Each org's agent, operator and auditor write what each normally writes; the controller
    (static user) records each instance's status."""
    return asyncio.run(_populate(ident))


async def _populate(ident: IdentityServer) -> dict[str, Org]:
    out = {name: await _org(ident, name) for name in ORGS}
    controller = await ident.connect_static("controller")
    try:
        for org in out.values():
            agent = await ident.connect_token(org.agent)
            op = await ident.connect_token(org.operator)
            try:
                checkpoint = Checkpoint(agent_uri=org.uri, instance="x1", seq=1, state={"org": org.name})
                await agent.js.publish(f"$KV.mesh_checkpoints.{org.instance_key}", encode(checkpoint))
                started = AuditEvent(type=EventType.STARTED, target=org.uri, instance="x1", actor=org.uri)
                await agent.js.publish(f"mesh.audit.{org.instance_key}.started", encode(started))
                record = KillRecord(target=org.uri, reason=f"{org.name} only")
                await op.js.publish(f"$KV.mesh_control.{org.name}.prod.mailer", encode(record))
                kill = AuditEvent(type=EventType.KILL, target=org.uri, actor=f"op-{org.name}")
                await op.js.publish(f"mesh.audit.{org.name}.prod.mailer._.kill", encode(kill))
                now = utcnow()
                status = InstanceStatus(
                    agent_uri=org.uri,
                    instance="x1",
                    status=Status.ACTIVE,
                    first_seen=now,
                    last_seen=now,
                    last_change=now,
                )
                await controller.js.publish(f"$KV.mesh_instances.{org.instance_key}", encode(status))
            finally:
                await agent.close()
                await op.close()
    finally:
        await controller.close()
    return out


async def _get(conn: Connection, stream: str, subject: str, timeout: float = 5.0) -> Msg:
    return await conn.nc.request(f"$JS.API.DIRECT.GET.{stream}.{subject}", b"", timeout=timeout)


async def _refused_get(conn: Connection, stream: str, subject: str) -> None:
    # Never answered: the short timeout only bounds the wait, the server's refusal is what is checked.
    with pytest.raises(nats.errors.TimeoutError):
        await _get(conn, stream, subject, timeout=T)
    api = f"$JS.API.DIRECT.GET.{stream}.{subject}"
    await await_until(lambda: recent_permission_violation(api), what=f"refusal of {api}")


async def _all(*calls: Awaitable[None]) -> None:
    """Refusals checked side by side: each waits out its own timeout."""
    await asyncio.gather(*calls)


def _reads(org: Org) -> list[tuple[str, str]]:
    """What each org stored: (stream, subject) of its checkpoint, kill record and status."""
    return [
        ("KV_mesh_checkpoints", f"$KV.mesh_checkpoints.{org.instance_key}"),
        ("KV_mesh_control", f"$KV.mesh_control.{org.name}.prod.mailer"),
        ("KV_mesh_instances", f"$KV.mesh_instances.{org.instance_key}"),
    ]


PAIRS = [("acme", "globex"), ("globex", "acme")]


@pytest.mark.parametrize(("mine", "theirs"), PAIRS)
async def test_operator_sees_its_org_and_nothing_of_the_other(
    ident: IdentityServer, orgs: dict[str, Org], mine: str, theirs: str
) -> None:
    op = await ident.connect_token(orgs[mine].operator)
    try:
        for stream, subject in _reads(orgs[mine]):
            assert mine.encode() in (await _get(op, stream, subject)).data
        await _all(*(_refused_get(op, stream, subject) for stream, subject in _reads(orgs[theirs])))
    finally:
        await op.close()


@pytest.mark.parametrize(("mine", "theirs"), PAIRS)
async def test_agent_reads_nothing_of_the_other_org(
    ident: IdentityServer, orgs: dict[str, Org], mine: str, theirs: str
) -> None:
    agent = await ident.connect_token(orgs[mine].agent)
    try:
        own_checkpoint, own_record, _ = _reads(orgs[mine])
        for stream, subject in (own_checkpoint, own_record):
            assert mine.encode() in (await _get(agent, stream, subject)).data
        await _all(*(_refused_get(agent, stream, subject) for stream, subject in _reads(orgs[theirs])))
    finally:
        await agent.close()


async def _audit_subjects(conn: Connection, token: str, filter_subject: str) -> list[str]:
    """Every audit event a consumer of this credential's own name, filtered so, delivers."""
    cred_id = (parse_token(token) or ("", ""))[0]
    config = ConsumerConfig(
        name=cred_id,
        filter_subject=filter_subject,
        ack_policy=AckPolicy.NONE,
        deliver_policy=DeliverPolicy.ALL,
        inactive_threshold=30.0,
    )
    await conn.js.add_consumer("MESH_AUDIT", config, timeout=T)
    try:
        psub = await conn.js.pull_subscribe_bind(cred_id, stream="MESH_AUDIT")
        out: list[str] = []
        try:
            while True:
                try:
                    msgs = await psub.fetch(10, timeout=0.5)
                except nats.errors.TimeoutError:
                    return out
                out += [m.subject for m in msgs]
        finally:
            await psub.unsubscribe()
    finally:
        await conn.js.delete_consumer("MESH_AUDIT", cred_id)


@pytest.mark.parametrize("who", ["operator", "auditor"])
@pytest.mark.parametrize(("mine", "theirs"), PAIRS)
async def test_audit_events_stay_inside_the_org(
    ident: IdentityServer, orgs: dict[str, Org], mine: str, theirs: str, who: str
) -> None:
    token = getattr(orgs[mine], who)
    conn = await ident.connect_token(token)
    try:
        own = await _audit_subjects(conn, token, f"mesh.audit.{mine}.*.*.*.*")
        assert sorted(own) == [
            f"mesh.audit.{mine}.prod.mailer._.kill",
            f"mesh.audit.{mine}.prod.mailer.x1.started",
        ]
        cred_id = (parse_token(token) or ("", ""))[0]

        async def refused_consumer(wider: str) -> None:
            config = ConsumerConfig(name=cred_id, filter_subject=wider, ack_policy=AckPolicy.NONE)
            with pytest.raises(nats.errors.TimeoutError):
                await conn.js.add_consumer("MESH_AUDIT", config, timeout=T)
            api = f"$JS.API.CONSUMER.CREATE.MESH_AUDIT.{cred_id}.{wider}"
            await await_until(lambda: recent_permission_violation(api), what=f"refusal of {api}")

        await _all(
            *(refused_consumer(w) for w in (f"mesh.audit.{theirs}.*.*.*.*", "mesh.audit.*.*.*.*.*")),
            _refused_get(conn, "MESH_AUDIT", f"mesh.audit.{theirs}.prod.mailer.x1.started"),
        )
        assert mine.encode() in (await _get(conn, "MESH_AUDIT", f"mesh.audit.{mine}.prod.mailer._.kill")).data
    finally:
        await conn.close()


@pytest.mark.parametrize(("mine", "theirs"), PAIRS)
async def test_heartbeats_reach_only_the_org(
    ident: IdentityServer, orgs: dict[str, Org], mine: str, theirs: str
) -> None:
    op = await ident.connect_token(orgs[mine].operator)
    seen: list[str] = []

    async def on_msg(msg: Msg) -> None:
        seen.append(msg.subject)

    try:
        await op.nc.subscribe(f"mesh.hb.{mine}.*.*.*", cb=on_msg)
        await op.nc.subscribe(f"mesh.hb.{theirs}.*.*.*", cb=on_msg)
        await op.nc.flush()
        await await_until(lambda: recent_permission_violation(f"mesh.hb.{theirs}.*.*.*"))
        for org in (theirs, mine):  # theirs first: once ours arrives, theirs would have too
            agent = await ident.connect_token(orgs[org].agent)
            try:
                await agent.nc.publish(f"mesh.hb.{orgs[org].instance_key}", b"{}")
                await agent.nc.flush()
            finally:
                await agent.close()
        await await_until(lambda: seen, what="its own org's heartbeat")
        assert seen == [f"mesh.hb.{orgs[mine].instance_key}"]
    finally:
        await op.close()

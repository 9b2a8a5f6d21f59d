"""nats-identity.conf on a 3-node cluster (compose.yaml's cluster flags, on loopback): the callout
on one node admits, scopes and kicks clients of every node."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path

import nkeys  # type: ignore[import-untyped]
import pytest

from controller.callout import CalloutService
from controller.natsjwt import IssuerKey, new_account_seed
from mesh.errors import AuthenticationFailed
from mesh.protocol.identity import Identity, Role
from mesh.runtime.settings import Settings
from mesh.transport import natserrors
from mesh.transport.connection import Connection, recent_permission_violation
from mesh.transport.identity_store import issue, open_bucket, revoke
from mesh.transport.provision import ProvisionOptions, provision
from mesh.transport.server import EmbeddedServer
from tests.integration.sdk_helpers import await_until
from tests.ports import free_port
from tests.security.identity_support import IDENTITY_CONF, STATIC, CalloutThread

pytestmark = pytest.mark.timeout(180)



class Cluster:
    def __init__(self, servers: list[EmbeddedServer], passwords: dict[str, str], seed: str) -> None:
        self.servers = servers
        self.passwords = passwords
        self.issuer = IssuerKey(seed)

    def static(self, node: int, user: str) -> Settings:
        return Settings(
            nats_url=self.servers[node].url, user=user, password=self.passwords[user], connect_timeout=10.0
        )

    def token(self, node: int, token: str) -> Settings:
        return Settings(nats_url=self.servers[node].url, token=token, connect_timeout=10.0)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    base = tmp_path_factory.mktemp("identity-cluster")
    passwords = {user: "pw-" + secrets.token_urlsafe(18) for user in STATIC}
    route = "rt-" + secrets.token_urlsafe(12)
    seed = new_account_seed()
    cluster_ports = [free_port() for _ in range(3)]
    servers = []
    with pytest.MonkeyPatch.context() as mp:
        for user, pw in passwords.items():
            mp.setenv(f"MESH_{user.upper()}_PASSWORD", pw)
        mp.setenv("MESH_CALLOUT_ISSUER", bytes(nkeys.from_seed(seed.encode()).public_key).decode())
        for i in range(3):
            routes = ",".join(
                f"nats://route:{route}@127.0.0.1:{p}" for j, p in enumerate(cluster_ports) if j != i
            )
            flags = [
                "--cluster_name",
                "mesh",
                "--cluster",
                f"nats://route:{route}@127.0.0.1:{cluster_ports[i]}",
            ]
            server = EmbeddedServer(
                Path(base) / f"n{i}",
                port=free_port(),
                config_file=IDENTITY_CONF,
                server_name=f"nats-{i + 1}",
                extra_args=[*flags, "--routes", routes],
            )
            servers.append(server)
        for server in servers:
            server.start()
    try:
        yield Cluster(servers, passwords, seed)
    finally:
        for server in servers:
            server.stop()
        natserrors._VIOLATIONS.clear()


async def _provisioned(cluster: Cluster) -> None:
    """``mesh init --replicas 3``, retried while the cluster elects its JetStream leaders."""
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        try:
            async with Connection(cluster.static(0, "admin"), name="test-admin") as conn:
                await provision(conn.js, conn.ns, ProvisionOptions(replicas=3))
                await open_bucket(conn.js, conn.ns, create=True, replicas=3)
            return
        except Exception:
            if asyncio.get_running_loop().time() > deadline:
                raise
            # sleep-ok: backoff between provisioning tries while the cluster elects its leaders
            await asyncio.sleep(0.5)


async def test_callout_on_one_node_serves_the_whole_cluster(cluster: Cluster) -> None:
    await _provisioned(cluster)
    service = CalloutService(
        cluster.static(0, "callout"), cluster.issuer, kick_settings=cluster.static(0, "sys")
    )
    callout = CalloutThread(service).start()
    try:
        async with Connection(cluster.static(1, "admin"), name="test-admin") as admin:
            kv = await open_bucket(admin.js, admin.ns)
            record, token = await issue(
                kv,
                Identity(role=Role.AGENT, scope="agent://acme/prod/mailer", instance="c1"),
                issued_by="test",
            )
            agent = await Connection.open(
                cluster.token(2, token), name="test-agent"
            )  # a node without the callout
            try:
                kv_cp = "$KV.mesh_checkpoints.acme.prod.mailer.c1"
                assert (await agent.js.publish(kv_cp, b"{}", timeout=10)).seq > 0  # its own, replicated
                await agent.nc.publish("mesh.hb.acme.prod.biller.c1", b"{}")
                await agent.nc.flush()
                await await_until(lambda: recent_permission_violation("mesh.hb.acme.prod.biller.c1"))
                assert await revoke(kv, record.id)
                # the callout (on node 1) has the server of node 3 kick it
                await await_until(lambda: not agent.is_connected, what="kick across the cluster")
            finally:
                await agent.close()
            with pytest.raises(AuthenticationFailed):
                await Connection.open(cluster.token(1, token), name="test-agent")
    finally:
        callout.stop()

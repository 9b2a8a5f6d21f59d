"""A real nats-server running the repository's ``nats.conf`` (roles, passwords from the environment)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from mesh.runtime.settings import Settings
from mesh.transport import natserrors
from mesh.transport.connection import Connection
from mesh.transport.provision import ProvisionOptions, provision
from mesh.transport.server import EmbeddedServer

ROOT = Path(__file__).resolve().parents[2]
NATS_CONF = ROOT / "nats.conf"
ROLES = ("admin", "agent", "operator", "controller", "auditor", "gateway")
PASSWORD_VARS = {role: f"MESH_{role.upper()}_PASSWORD" for role in (*ROLES, "sys")}


class SecureServer:
    """The server plus the (random, per-run) password of each role."""

    def __init__(self, server: EmbeddedServer, passwords: dict[str, str]) -> None:
        self.server = server
        self.passwords = passwords

    @property
    def url(self) -> str:
        return self.server.url

    def settings(self, user: str, *, password: str | None = None, **kw: object) -> Settings:
        values: dict[str, object] = {
            "nats_url": self.url,
            "user": user,
            "password": password if password is not None else self.passwords[user],
            "prefix": "mesh",  # nats.conf is written for the default prefix
            "connect_timeout": 5.0,
        }
        values.update(kw)
        return Settings(**values)  # type: ignore[arg-type]

    async def connect(self, user: str, **kw: object) -> Connection:
        return await Connection.open(self.settings(user, **kw), name=f"test-{user}")


def role_env(passwords: dict[str, str]) -> dict[str, str]:
    return {PASSWORD_VARS[role]: pw for role, pw in passwords.items()}


@pytest.fixture(scope="module")
def secure_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureServer]:
    """nats-server with nats.conf; the admin user has provisioned the default `mesh` namespace."""
    passwords = {role: "pw-" + secrets.token_urlsafe(18) for role in PASSWORD_VARS}
    with pytest.MonkeyPatch.context() as mp:
        for var, value in role_env(passwords).items():
            mp.setenv(var, value)  # the server process inherits them: nats.conf reads $MESH_*_PASSWORD
        server = EmbeddedServer(tmp_path_factory.mktemp("secure-nats"), port=0, config_file=NATS_CONF)
        server.start()
    secure = SecureServer(server, passwords)

    async def _provision() -> None:
        conn = await secure.connect("admin")
        try:
            await provision(conn.js, conn.ns, ProvisionOptions())
        finally:
            await conn.close()

    try:
        asyncio.run(_provision())
        yield secure
    finally:
        server.stop()
        # the violations these tests provoked must not colour later tests' error mapping
        natserrors._VIOLATIONS.clear()

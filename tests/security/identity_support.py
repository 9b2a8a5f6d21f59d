"""A real nats-server running nats-identity.conf, with the auth callout service running beside it."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path

import nkeys  # type: ignore[import-untyped]
import pytest

from controller.callout import CalloutService
from controller.natsjwt import IssuerKey, new_account_seed
from mesh.protocol.identity import Identity, Role
from mesh.runtime.settings import Settings
from mesh.transport import natserrors
from mesh.transport.connection import Connection
from mesh.transport.identity_store import issue, open_bucket, revoke
from mesh.transport.provision import ProvisionOptions, provision
from mesh.transport.server import EmbeddedServer

ROOT = Path(__file__).resolve().parents[2]
IDENTITY_CONF = ROOT / "nats-identity.conf"
STATIC = ("admin", "controller", "gateway", "callout", "sys")

__all__ = ["CalloutThread", "IdentityServer", "identity_server_fixture"]


class CalloutThread:
    """The callout service in a thread of its own (its own loop), as a separate process would be."""

    def __init__(self, service: CalloutService) -> None:
        self.service = service
        self.loop = asyncio.new_event_loop()
        self._task: asyncio.Task[None] | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, name="callout", daemon=True)

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def main() -> None:
            self._task = asyncio.ensure_future(self.service.run())
            waiter = asyncio.ensure_future(self.service.ready.wait())
            await asyncio.wait({self._task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            self._ready.set()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

        try:
            self.loop.run_until_complete(main())
        except BaseException as exc:  # surfaced by start()
            self._error = exc
            self._ready.set()

    def start(self) -> CalloutThread:
        self.thread.start()
        self._ready.wait(30)
        if self._task is not None and self._task.done() and not self._task.cancelled():
            raise RuntimeError(f"callout failed to start: {self._task.exception()!r}")
        if self._error is not None:
            raise RuntimeError(f"callout failed to start: {self._error!r}")
        return self

    def stop(self) -> None:
        if self._task is not None:
            self.loop.call_soon_threadsafe(self._task.cancel)
        self.thread.join(15)


class IdentityServer:
    def __init__(self, server: EmbeddedServer, passwords: dict[str, str], seed: str) -> None:
        self.server = server
        self.passwords = passwords
        self.issuer = IssuerKey(seed)
        self.issuer_seed = seed
        self.callout: CalloutThread | None = None

    @property
    def url(self) -> str:
        return self.server.url

    def static_settings(self, user: str, **kw: object) -> Settings:
        values: dict[str, object] = {
            "nats_url": self.url,
            "user": user,
            "password": self.passwords[user],
            "connect_timeout": 5.0,
        }
        values.update(kw)
        return Settings.model_validate(values)

    def token_settings(self, token: str, **kw: object) -> Settings:
        values: dict[str, object] = {"nats_url": self.url, "token": token, "connect_timeout": 5.0}
        values.update(kw)
        return Settings.model_validate(values)

    async def connect_token(self, token: str, **kw: object) -> Connection:
        return await Connection.open(self.token_settings(token, **kw), name="test-identity")

    async def connect_static(self, user: str) -> Connection:
        return await Connection.open(self.static_settings(user), name=f"test-{user}")

    async def issue(self, identity: Identity) -> tuple[str, str]:
        """(credential id, token) of a new credential, issued as admin."""
        conn = await self.connect_static("admin")
        try:
            kv = await open_bucket(conn.js, conn.ns, create=True)
            record, token = await issue(kv, identity, issued_by="test")
        finally:
            await conn.close()
        return record.id, token

    async def issue_agent(self, uri: str, instance: str | None = None) -> tuple[str, str]:
        return await self.issue(Identity(role=Role.AGENT, scope=uri, instance=instance))

    async def revoke(self, cred_id: str) -> bool:
        conn = await self.connect_static("admin")
        try:
            return await revoke(await open_bucket(conn.js, conn.ns), cred_id)
        finally:
            await conn.close()

    def start_callout(self, ttl: int = 900, *, kick: bool = True) -> CalloutThread:
        kick_settings = self.static_settings("sys") if kick else None
        service = CalloutService(
            self.static_settings("callout"), self.issuer, ttl=ttl, kick_settings=kick_settings
        )
        self.callout = CalloutThread(service).start()
        return self.callout

    def stop_callout(self) -> None:
        if self.callout is not None:
            self.callout.stop()
            self.callout = None


def identity_server_fixture(tmp: Path) -> Iterator[IdentityServer]:
    passwords = {user: "pw-" + secrets.token_urlsafe(18) for user in STATIC}
    seed = new_account_seed()
    with pytest.MonkeyPatch.context() as mp:
        for user, pw in passwords.items():
            mp.setenv(f"MESH_{user.upper()}_PASSWORD", pw)
        mp.setenv("MESH_CALLOUT_ISSUER", bytes(nkeys.from_seed(seed.encode()).public_key).decode())
        server = EmbeddedServer(tmp, port=0, config_file=IDENTITY_CONF)
        server.start()
    ident = IdentityServer(server, passwords, seed)

    async def _provision() -> None:
        conn = await ident.connect_static("admin")
        try:
            await provision(conn.js, conn.ns, ProvisionOptions())
            await open_bucket(conn.js, conn.ns, create=True)
        finally:
            await conn.close()

    try:
        asyncio.run(_provision())
        ident.start_callout()
        yield ident
    finally:
        ident.stop_callout()
        server.stop()
        natserrors._VIOLATIONS.clear()

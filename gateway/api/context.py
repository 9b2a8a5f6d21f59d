"""The API's state: its NATS connections per role, key lookups, rate limits, HTTP agents, auth."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import structlog
from starlette.requests import Request

from gateway.api.apikeys import API_KEY_PREFIX, API_KEYS
from gateway.api.config import ApiConfig, Role
from gateway.api.fleet import HttpAgents
from gateway.api.ratelimit import RateLimiter
from gateway.api.rights import Right, require
from gateway.context import Gateway
from gateway.errors import Invalid, RateLimited, RevokedKey, UnknownKey
from gateway.inbound import key_of
from gateway.keys import Identity
from mesh.client.operator import AsyncMesh
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection

__all__ = ["Api", "Caller", "open_api"]

log = structlog.get_logger("gateway.api")

#: Operator clients kept, one per API key that used them (each records its own actor).
MAX_MESHES = 256


@dataclass(frozen=True, slots=True)
class Caller:
    role: str
    key_id: str
    actor: str


class Api:
    def __init__(
        self, gw: Gateway, config: ApiConfig, conn: Connection, roles: dict[Role, Connection]
    ) -> None:
        self.gw = gw
        self.config = config
        self.conn = conn
        #: The connection each role acts over; the gateway's own for roles not configured.
        self.roles = roles
        self.keys = API_KEYS.cache(conn)
        self.agents = HttpAgents(gw.tracker, self.role_conn("agent"))
        self.limiter = RateLimiter(config.rate, config.burst)
        self._meshes: dict[str, AsyncMesh] = {}

    def role_conn(self, role: Role) -> Connection:
        return self.roles.get(role, self.conn)

    async def start(self) -> None:
        await self.keys.start()
        await self.agents.start()

    async def stop(self) -> None:
        await self.agents.stop()
        await self.keys.stop()
        for mesh in self._meshes.values():
            with contextlib.suppress(Exception):
                await mesh.close()
        for conn in self.roles.values():
            with contextlib.suppress(Exception):
                await conn.close()

    # -- authentication -------------------------------------------------------------------------
    async def caller(self, request: Request, right: Right) -> Caller:
        """The operator or auditor behind the request's API key, if its role has ``right``."""
        key = key_of(request)
        if key is not None and key.startswith(API_KEY_PREFIX) and len(key) <= 128 and key.isascii():
            record = await self.keys.verify(key, "API key")
            if record is None:
                raise UnknownKey("unknown API key")
            if record.revoked_at is not None:
                raise RevokedKey(record.id)
            require(record.role, right, record.id)
            return Caller(record.role, record.id, record.actor)
        ident = await self.gw.identify(key, None)  # 401 unless a valid agent key
        require("agent", right, ident.key_id)  # 403: an agent key on an operator route
        return Caller("agent", ident.key_id, ident.agent_uri)

    async def agent(self, request: Request) -> Identity:
        """The agent instance behind a gateway key (401/403), within its rate limit (429)."""
        key = key_of(request)
        if key is not None and key.startswith(API_KEY_PREFIX):
            await self.caller(request, "agent")  # 401 if unknown, else 403 naming the right
        ident = await self.gw.identify(key, request.headers.get("x-mesh-instance"))
        if not self.limiter.allow(ident.key_id):
            wait = self.limiter.retry_after(ident.key_id)
            raise RateLimited(
                f"key {ident.key_id} is over its rate limit ({self.config.rate:g} requests/s): "
                f"retry in {wait:.2f}s",
                retry_after=round(wait, 3),
            )
        return ident

    async def with_instance(self, request: Request, ident: Identity, instance: str | None) -> Identity:
        """``ident`` acting as the body's ``instance`` when it names one (checked like the header)."""
        if instance is None or instance == ident.instance:
            return ident
        header = request.headers.get("x-mesh-instance")
        if header is not None:
            raise Invalid(f"instance {instance!r} differs from X-Mesh-Instance {header!r}", field="instance")
        return await self.gw.identify(key_of(request), instance)

    # -- operator clients -----------------------------------------------------------------------
    async def mesh(self, caller: Caller) -> AsyncMesh:
        """An operator client over the role's connection that records ``caller.actor`` as the actor."""
        cache_key = f"{caller.role}:{caller.actor}"
        mesh = self._meshes.get(cache_key)
        if mesh is None:
            conn = self.role_conn("operator" if caller.role == "operator" else "auditor")
            settings = conn.settings.model_copy(update={"user": None, "actor": caller.actor})
            if len(self._meshes) >= MAX_MESHES:
                old = self._meshes.pop(next(iter(self._meshes)))  # the oldest
                await old.close()
            mesh = self._meshes[cache_key] = await AsyncMesh(settings, connection=conn).connect()
        return mesh


async def open_api(gw: Gateway, settings: Settings, config: ApiConfig, conn: Connection) -> Api:
    """Connect the configured role logins (each its own NATS connection) and start key lookups."""
    roles: dict[Role, Connection] = {}
    try:
        for role, login in config.nats.items():
            roles[role] = await Connection.open(login.settings(settings), name=f"mesh-gateway-api {role}")
        api = Api(gw, config, conn, roles)
        await api.start()
    except BaseException:
        for c in roles.values():
            with contextlib.suppress(Exception):
                await c.close()
        raise
    log.info("HTTP API enabled", roles={r: login.user for r, login in config.nats.items()})
    return api

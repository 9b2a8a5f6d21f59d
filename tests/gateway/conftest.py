"""Gateway fixtures: a fake upstream on loopback, a running gateway, keys, and the operator API."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from gateway.config import GatewayConfig, Upstream
from gateway.context import Gateway
from gateway.keystore import create_key
from gateway.service import bound_port, running_gateway
from mesh.client.operator import AsyncMesh
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection
from tests.gateway.upstream import FakeUpstream, running_upstream, start_resetter

UPSTREAM_SECRET = "sk-upstream-REAL-secret-0123456789"
AGENT = "agent://acme/prod/mailer"


async def eventually(check: Callable[[], Awaitable[Any] | Any], timeout: float = 10.0) -> Any:
    """Poll ``check`` until it returns something truthy (bounded: a hang fails, nothing is timed)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        assert time.monotonic() < deadline, "condition not met in time"
        # sleep-ok: the poll interval: the loop re-checks until the condition holds or the deadline passes
        await asyncio.sleep(0.02)


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    async with running_upstream() as up:
        yield up


@pytest.fixture
async def resetter() -> AsyncIterator[int]:
    port, server = await start_resetter()
    yield port
    server.close()


def gateway_config(upstream: FakeUpstream, resetter: int | None = None, **kw: Any) -> GatewayConfig:
    ups = {
        "openai": Upstream(
            name="openai", kind="openai", base_url=upstream.url + "/v1", api_key=SecretStr(UPSTREAM_SECRET)
        ),
        "anthropic": Upstream(
            name="anthropic", kind="anthropic", base_url=upstream.url, api_key=SecretStr(UPSTREAM_SECRET)
        ),
    }
    if resetter is not None:
        ups["broken"] = Upstream(name="broken", kind="openai", base_url=f"http://127.0.0.1:{resetter}/v1")
    return GatewayConfig(port=0, upstreams=ups, **kw)


@dataclass
class Running:
    gw: Gateway
    url: str
    conn: Connection
    settings: Settings

    async def key(self, agent: str = AGENT, **kw: Any) -> str:
        key, _ = await create_key(self.conn, agent, instance=kw.get("instance"), upstream=kw.get("upstream"),
                                  actor="tester")  # fmt: skip
        return key

    async def health(self) -> httpx.Response:
        async with httpx.AsyncClient() as c:
            return await c.get(self.url + "/healthz")


@contextlib.asynccontextmanager
async def start_gateway(
    settings: Settings, conn: Connection, config: GatewayConfig
) -> AsyncIterator[Running]:
    async with running_gateway(settings, config, meter_interval=0.5) as (gw, server):
        yield Running(gw, f"http://127.0.0.1:{bound_port(server)}", conn, settings)


@pytest.fixture
async def gateway(
    settings: Settings, conn: Connection, upstream: FakeUpstream, resetter: int
) -> AsyncIterator[Running]:
    async with start_gateway(settings, conn, gateway_config(upstream, resetter, read_timeout=1.5)) as g:
        yield g


@pytest.fixture
async def mesh(settings: Settings) -> AsyncIterator[AsyncMesh]:
    async with AsyncMesh(settings) as m:
        yield m


class HeartbeatWatch:
    """The last heartbeat the gateway sent per instance key, from a real subscription."""

    def __init__(self) -> None:
        self.last: dict[str, Any] = {}

    async def on_msg(self, msg: Any) -> None:
        from mesh.protocol.models import Heartbeat

        hb = Heartbeat.model_validate_json(msg.data)
        self.last[f"{hb.agent_uri}#{hb.instance}"] = hb

    def usage(self, agent: str = AGENT, instance: str = "gateway") -> dict[str, float]:
        hb = self.last.get(f"{agent}#{instance}")
        return dict(hb.usage) if hb else {}


@pytest.fixture
async def heartbeats(conn: Connection) -> AsyncIterator[HeartbeatWatch]:
    watch = HeartbeatWatch()
    sub = await conn.nc.subscribe(conn.ns.heartbeat_wildcard, cb=watch.on_msg)
    yield watch
    await sub.unsubscribe()

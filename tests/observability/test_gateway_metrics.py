"""The gateway's /metrics against a real nats-server: proxied, refused and rejected calls, kill state."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from mesh.client.operator import AsyncMesh
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection
from tests.gateway.conftest import Running, eventually, gateway_config, start_gateway
from tests.gateway.upstream import FakeUpstream, running_upstream
from tests.observability.dashboard import metric_names, queries
from tests.observability.helpers import Samples, scrape, series, value

pytestmark = pytest.mark.timeout(90)

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    async with running_upstream() as up:
        yield up


async def call(gw: Running, key: str) -> int:
    async with httpx.AsyncClient(timeout=30) as c:
        resp = await c.post(
            gw.url + "/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {key}"}
        )
        return resp.status_code


async def test_gateway_metrics_follow_its_calls_and_kills(
    settings: Settings, conn: Connection, upstream: FakeUpstream
) -> None:
    async with start_gateway(settings, conn, gateway_config(upstream)) as gw, AsyncMesh(settings) as mesh:
        port = int(gw.url.rsplit(":", 1)[1])
        key = await gw.key()
        assert await call(gw, key) == 200
        assert await call(gw, "not-a-key") == 401
        await mesh.kill("agent://acme/prod/mailer", reason="metrics test", wait=0)

        async def refused() -> bool:
            return await call(gw, key) == 403

        await eventually(refused)
        s: Samples = await scrape(port)
        assert value(s, "mesh_gateway_requests_proxied_total") == 1
        assert (value(s, "mesh_gateway_requests_refused_total") or 0) >= 1
        rejected = series(s, "mesh_gateway_requests_rejected_total")
        assert sum(rejected.values()) >= 1, rejected
        assert value(s, "mesh_gateway_kill_records_in_force") == 1
        assert value(s, "mesh_gateway_state", state="serving") == 1
        assert value(s, "mesh_gateway_state", state="fail_closed") == 0
        assert value(s, "mesh_gateway_nats_connected") == 1
        assert value(s, "mesh_gateway_nats_reconnects_total") == 0
        # the Grafana dashboard reads only series the gateway exports
        wanted = {n for n in metric_names([e for _, e in queries()]) if n.startswith("mesh_gateway_")}
        assert wanted and wanted <= {name for name, _ in s}
        await mesh.resume("agent://acme/prod/mailer", reason="done", wait=0)

        async def cleared() -> bool:
            return value(await scrape(port), "mesh_gateway_kill_records_in_force") == 0

        await eventually(cleared)

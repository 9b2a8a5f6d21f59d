"""AXME's own published client (``axme`` 0.2.0) against the gateway's /v1/mesh routes and a running
mesh (controller and SDK agents): only base_url and the key change."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from axme import AxmeAuthError, AxmeClient, AxmeClientConfig, AxmeValidationError

from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection
from tests.gateway.http_api_support import ApiGateway, api_gateway
from tests.integration.controller_helpers import eventually, fast_options, running_controller
from tests.operator_support import URI, Worker

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
async def api(settings: Settings, conn: Connection) -> AsyncIterator[ApiGateway]:
    async with running_controller(settings, fast_options()), api_gateway(settings, conn) as g:
        yield g


@pytest.fixture
async def workers(settings: Settings, api: ApiGateway) -> AsyncIterator[list[Worker]]:
    started = [await Worker(settings, URI, name).start() for name in ("w1", "w2")]
    yield started
    for w in started:
        await w.stop()


def client(api: ApiGateway, key: str) -> AxmeClient:
    """AXME's client as it builds itself, plus a hook validating each response against the OpenAPI document.

    It is synchronous (httpx.Client), so it runs in a thread while the gateway serves on this loop.
    """
    config = AxmeClientConfig(base_url=api.url, api_key=key, max_retries=0)

    def validate(response: httpx.Response) -> None:
        response.read()
        api.validator.validate(response)

    probe = AxmeClient(config)
    http = httpx.Client(
        base_url=api.url, timeout=30.0, headers=probe._default_headers(), event_hooks={"response": [validate]}
    )
    probe.close()
    return AxmeClient(config, http_client=http)


async def call(fn: Any, *args: Any, **kw: Any) -> Any:
    return await asyncio.to_thread(fn, *args, **kw)


async def test_axme_client_lists_kills_and_resumes_sdk_agents(api: ApiGateway, workers: list[Worker]) -> None:
    ops = client(api, api.operator_key)
    http_agent = client(api, await api.agent_key(URI, instance="axme1"))

    beat = await call(
        http_agent.mesh.heartbeat, metrics={"intents_total": 3, "cost_usd": 0.25, "avg_latency_ms": 40}
    )
    assert beat["ok"] is True and beat["killed"] is False and beat["health_status"] == "healthy"
    assert beat["address_id"] == "acme.prod.mailer.axme1"

    async def listed() -> Any:
        agents = (await call(ops.mesh.list_agents))["agents"]
        row = next((a for a in agents if a["address_id"] == "acme.prod.mailer"), None)
        return row if row and {i["instance"] for i in row["instances"]} >= {"w1", "w2", "axme1"} else None

    row = await eventually(listed, what="the agent listed with its three instances")
    assert row["agent_uri"] == URI and row["health_status"] == "healthy"
    axme1 = next(i for i in row["instances"] if i["instance"] == "axme1")
    assert axme1["metrics"] == {
        "intents_total": 3.0,
        "cost_usd": 0.25,
    }  # counters summed, averages are metadata
    assert axme1["metadata"]["avg_latency_ms"] == 40
    detail = (await call(ops.mesh.get_agent, "acme.prod.mailer"))["agent"]
    assert detail["records"] == [] and any(e["type"] == "started" for e in detail["events"])

    killed = await call(ops.mesh.kill, "acme.prod.mailer")
    report = killed["report"]
    assert killed["ok"] and report["target"] == URI
    # The SDK agents halted on it and answered within the wait; the HTTP agent had not acked yet.
    assert {r["instance"] for r in report["instances"]} == {"w1", "w2"}
    assert [m["instance"] for m in report["missing"]] == ["axme1"]
    frozen = [w.done for w in workers]
    after = await call(http_agent.mesh.heartbeat)
    assert after["killed"] is True and after["health_status"] == "killed"
    assert after["record"]["command_id"] == report["command_id"]

    async def all_killed() -> Any:
        return [
            a for a in (await call(ops.mesh.list_agents, health="killed"))["agents"] if a["agent_uri"] == URI
        ]

    assert (await eventually(all_killed, what="health killed"))[0]["health_status"] == "killed"
    halted = (await call(ops.mesh.list_events, event_type="halted"))["events"]
    assert {e["instance"] for e in halted} == {"w1", "w2"} and all(e["type"] == "halted" for e in halted)

    resumed = await call(ops.mesh.resume, "acme.prod.mailer")
    assert resumed["ok"] and {r["instance"] for r in resumed["report"]["instances"]} == {"w1", "w2"}
    assert (await call(http_agent.mesh.heartbeat))["killed"] is False

    async def working() -> bool:
        return all(w.done > f for w, f in zip(workers, frozen, strict=True))

    await eventually(working, what="the SDK agents working again")
    newest = (await call(ops.mesh.list_events, limit=5))["events"]
    assert len(newest) == 5 and newest[0]["time"] >= newest[-1]["time"]  # newest first


async def test_axme_client_errors(api: ApiGateway) -> None:
    ops = client(api, api.operator_key)
    with pytest.raises(AxmeAuthError) as denied:
        await call(client(api, "mo-not-a-real-key").mesh.list_agents)
    assert denied.value.status_code == 401 and "unknown API key" in denied.value.message
    with pytest.raises(AxmeAuthError) as forbidden:
        await call(client(api, api.auditor_key).mesh.kill, "acme.prod.mailer")
    assert forbidden.value.status_code == 403 and "'kill'" in forbidden.value.message
    with pytest.raises(AxmeValidationError) as bad:
        await call(ops.mesh.kill, "acme.prod")
    assert bad.value.status_code == 400 and "address_id" in bad.value.message
    with pytest.raises(AxmeValidationError):
        await call(ops.mesh.list_events, event_type="nonsense")

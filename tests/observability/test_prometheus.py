"""A real Prometheus scrapes a running controller; its HTTP API shows the fleet and a kill's latency."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_sdk import AsyncAgent
from mesh.client.operator import AsyncMesh
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection
from tests.integration.controller_helpers import eventually, fast_options, running_controller
from tests.observability.dashboard import queries
from tests.observability.prometheus_proc import Prometheus, find_prometheus

pytestmark = pytest.mark.timeout(120)

MAILER = "agent://acme/prod/mailer"


@pytest.fixture
def prometheus_bin() -> str:
    return find_prometheus()


@contextlib.contextmanager
def prometheus(workdir: Path, targets: list[str]) -> Iterator[Prometheus]:
    prom = Prometheus(workdir, "mesh-controller", targets).start()
    try:
        yield prom
    finally:
        prom.stop()


async def test_prometheus_scrapes_the_fleet_and_the_kill_latency(
    conn: Connection, settings: Settings, tmp_path: Path, prometheus_bin: str
) -> None:
    async with running_controller(settings, fast_options(metrics_port=0)) as ctl:
        assert ctl.metrics_port is not None
        agents = [
            await AsyncAgent(MAILER, instance=f"p{i}", settings=settings, on_kill="pause").start()
            for i in range(2)
        ]

        async def pass_safe_points(agent: AsyncAgent) -> None:
            while True:
                await agent.heartbeat()
                await agent.sleep(0.02)

        loops = [asyncio.create_task(pass_safe_points(a)) for a in agents]
        # one refused heartbeat, so that the malformed-messages panel has a series
        await conn.nc.publish(f"{conn.ns.prefix}.hb.acme.prod.mailer.bad", b"{not json")
        try:
            with prometheus(tmp_path, [f"127.0.0.1:{ctl.metrics_port}"]) as prom:
                await eventually(prom.ready, what="prometheus to be ready")

                async def target_up() -> float | None:
                    return await prom.scalar('up{job="mesh-controller"}')

                assert await eventually(target_up, what="the controller scraped") == 1.0

                async def active() -> float | None:
                    v = await prom.scalar('sum(mesh_fleet_instances{status="active"})')
                    return v if v == 2.0 else None

                await eventually(active, what="2 active instances in Prometheus")
                by_agent = await prom.query('mesh_instances{status="active"}')
                assert [(r["metric"]["org"], r["metric"]["env"], r["metric"]["agent"]) for r in by_agent] == [
                    ("acme", "prod", "mailer")
                ]
                assert "instance_id" not in by_agent[0]["metric"]

                async with AsyncMesh(settings) as mesh:
                    report = await mesh.kill(MAILER, reason="prometheus test", wait=10.0)
                assert report.acked == 2

                async def paused() -> float | None:
                    v = await prom.scalar('sum(mesh_fleet_instances{status="paused"})')
                    return v if v == 2.0 else None

                await eventually(paused, what="2 paused instances in Prometheus")

                async def acks() -> float | None:
                    v = await prom.scalar('mesh_kill_ack_latency_seconds_count{actor_kind="human"}')
                    return v if v == 2.0 else None

                await eventually(acks, what="2 kill acknowledgements in the histogram")
                assert await prom.scalar('mesh_kills_total{actor_kind="human"}') == 1.0
                p99 = await prom.scalar(
                    "histogram_quantile(0.99, sum by (le) (mesh_kill_ack_latency_seconds_bucket))"
                )
                assert p99 is not None and not math.isnan(p99) and 0.0 <= p99 <= 60.0
                total = await prom.scalar('mesh_kill_ack_latency_seconds_sum{actor_kind="human"}')
                assert total is not None and total >= 0.0

                # every query of the Grafana dashboard is valid PromQL to this Prometheus, and each
                # controller panel finds data (the gateway's are not scraped here)
                empty: list[str] = []
                invalid: list[str] = []

                async def dashboard_has_data() -> bool:
                    empty.clear()
                    for title, expr in queries():
                        try:
                            result = await prom.query(expr)  # asserts status "success"
                        except AssertionError as exc:
                            invalid.append(f"{title}: {exc}")
                            return True  # no point polling a query Prometheus refuses
                        if not result and "mesh_gateway_" not in expr:
                            empty.append(f"{title}: {expr}")
                    return not empty

                with contextlib.suppress(AssertionError):
                    await eventually(dashboard_has_data, timeout=20, what="data behind every panel")
                assert not invalid, f"queries Prometheus refused: {invalid}"
                assert not empty, f"controller panels without data: {empty}"
        finally:
            for task in loops:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
            for a in agents:
                with contextlib.suppress(Exception):
                    await a.stop()

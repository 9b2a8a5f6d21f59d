"""The controller's /metrics against a real nats-server: fleet gauges, refusals, transitions, kills."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import aiohttp
import pytest

from agent_sdk import AgentKilled, AsyncAgent
from controller.runner import Controller
from mesh.client.operator import AsyncMesh
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection
from tests.integration.controller_helpers import (
    ControllerProcess,
    eventually,
    fast_options,
    heartbeat,
    running_controller,
    send,
)
from tests.observability.helpers import Samples, scrape, series, value
from tests.ports import free_port

pytestmark = pytest.mark.timeout(90)

MAILER = "agent://acme/prod/mailer"
BILLING = "agent://beta/dev/billing"


def port_of(ctl: Controller) -> int:
    assert ctl.metrics_port is not None, "the controller is not serving metrics"
    return ctl.metrics_port


async def scraped_until(ctl: Controller, check: object, what: str) -> Samples:
    async def attempt() -> Samples | None:
        samples = await scrape(port_of(ctl))
        return samples if check(samples) else None  # type: ignore[operator]

    return await eventually(attempt, what=what)


async def test_fleet_refusals_and_transitions(conn: Connection, settings: Settings) -> None:
    ns = conn.ns
    async with running_controller(settings, fast_options(metrics_port=0, lost_after=2.0)) as ctl:
        for i in range(3):
            await send(conn.nc, ns, heartbeat(MAILER, f"m{i}"))
        await send(conn.nc, ns, heartbeat(BILLING, "b0"))
        await conn.nc.publish(f"{ns.prefix}.hb.acme.prod.mailer.m9", b"{not json")
        await conn.nc.publish(f"{ns.prefix}.hb.acme.prod.mailer.m9", b"x" * (70 * 1024))
        # garbage where kill events go: counted, and the kill counters are untouched
        await conn.nc.publish(ns.audit_filter("kill").replace("*", "_"), b"not an event")

        def four_active(s: Samples) -> bool:
            return value(s, "mesh_fleet_instances", status="active") == 4

        s = await scraped_until(ctl, four_active, "4 active instances in the fleet gauge")
        assert value(s, "mesh_controller_role", role="active") == 1
        assert value(s, "mesh_instances", status="active", org="acme", env="prod", agent="mailer") == 3
        assert value(s, "mesh_instances", status="active", org="beta", env="dev", agent="billing") == 1
        # no instance id in any label, anywhere
        assert not any(dict(labels).get("instance") for (_, labels) in s)
        assert value(s, "mesh_controller_heartbeats_ingested_total") == 4
        assert value(s, "mesh_controller_nats_connected") == 1

        def refused(s: Samples) -> bool:
            return (
                value(s, "mesh_controller_malformed_messages_total", reason="oversized") == 1
                and value(s, "mesh_controller_malformed_messages_total", reason="audit_malformed") == 1
            )

        s = await scraped_until(ctl, refused, "the oversized heartbeat and the bad event counted")
        assert value(s, "mesh_controller_malformed_messages_total", reason="malformed_json") == 1
        assert value(s, "mesh_controller_messages_received_total") == 6
        assert value(s, "mesh_kills_total", actor_kind="human") == 0

        # silence: every instance goes stale, then lost, and the gauges follow
        def all_lost(s: Samples) -> bool:
            # the audit events are written after the transitions: wait for both
            return (
                value(s, "mesh_fleet_instances", status="lost") == 4
                and value(s, "mesh_controller_audit_events_written_total") == 8
            )

        s = await scraped_until(ctl, all_lost, "every instance lost")
        assert value(s, "mesh_controller_transitions_total", to="stale") == 4
        assert value(s, "mesh_controller_transitions_total", to="lost") == 4
        assert value(s, "mesh_fleet_instances", status="active") == 0
        assert value(s, "mesh_instances", status="active", org="acme", env="prod", agent="mailer") is None
        assert value(s, "mesh_instances", status="lost", org="acme", env="prod", agent="mailer") == 3


class Runner:
    """A real AsyncAgent passing a safe point every 20 ms until killed."""

    def __init__(self, settings: Settings, uri: str, instance: str) -> None:
        self.agent = AsyncAgent(uri, instance=instance, settings=settings, hard_kill=False)
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> Runner:
        await self.agent.start()
        self.task = asyncio.create_task(self._loop())
        return self

    async def _loop(self) -> None:
        with contextlib.suppress(AgentKilled):
            while True:
                await self.agent.heartbeat()
                self.agent.record(emails=1)
                await self.agent.sleep(0.02)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(BaseException):
                await self.task
        with contextlib.suppress(Exception):
            await self.agent.stop()


async def test_kills_resumes_and_kill_latency(conn: Connection, settings: Settings) -> None:
    options = fast_options(metrics_port=0, policy_reload_every=0.2)
    async with running_controller(settings, options) as ctl, AsyncMesh(settings) as mesh:
        runners = [await Runner(settings, MAILER, f"k{i}").start() for i in range(3)]
        try:
            report = await mesh.kill(MAILER, reason="metrics test", wait=10.0)
            assert report.acked == 3

            def three_acks(s: Samples) -> bool:
                return value(s, "mesh_kill_ack_latency_seconds_count", actor_kind="human") == 3

            s = await scraped_until(ctl, three_acks, "three kill acknowledgements in the histogram")
            assert value(s, "mesh_kills_total", actor_kind="human") == 1
            assert value(s, "mesh_kills_total", actor_kind="policy") == 0
            # the latency of every ack is at most the 60 s bucket, and the buckets are cumulative
            buckets = {
                dict(labels)["le"]: v
                for labels, v in series(s, "mesh_kill_ack_latency_seconds_bucket").items()
                if dict(labels)["actor_kind"] == "human"
            }
            assert buckets["60.0"] == buckets["+Inf"] == 3
            assert sorted(buckets.values()) == [buckets[k] for k in sorted(buckets, key=_le)]
            await mesh.resume(MAILER, reason="metrics test done", wait=1.0)

            def resumed(s: Samples) -> bool:
                return value(s, "mesh_resumes_total", actor_kind="human") == 1

            await scraped_until(ctl, resumed, "the resume counted")
        finally:
            for r in runners:
                await r.stop()

        # a policy kill is counted as one, with its own latency series
        await mesh.set_policy("mail-cap", "agent://acme/prod/*", ["emails<=5/1m"])
        runners = [await Runner(settings, MAILER, "p1").start()]
        try:

            def policy_ack(s: Samples) -> bool:
                return value(s, "mesh_kill_ack_latency_seconds_count", actor_kind="policy") == 1

            s = await scraped_until(ctl, policy_ack, "the policy kill acknowledged")
            assert value(s, "mesh_kills_total", actor_kind="policy") == 1
            assert (value(s, "mesh_controller_policy_breaches_total") or 0) >= 1
            evaluations = value(s, "mesh_controller_policy_evaluations_total") or 0
            assert evaluations >= 1
            assert value(s, "mesh_controller_policy_actions_total", action="kill") == 1
            assert value(s, "mesh_controller_policies") == 1
        finally:
            for r in runners:
                await r.stop()


def _le(bound: str) -> float:
    return float("inf") if bound == "+Inf" else float(bound)


async def test_metrics_endpoint_answers_only_metrics(conn: Connection, settings: Settings) -> None:
    async with running_controller(settings, fast_options(metrics_port=0)) as ctl:
        base = f"http://127.0.0.1:{port_of(ctl)}"
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/") as resp:
                assert resp.status == 404 and "/metrics" in await resp.text()
            async with session.post(f"{base}/metrics") as resp:
                assert resp.status == 405
        # garbage on the socket does not take the server down
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(ctl))
        writer.write(b"\x00\x01garbage\r\n\r\n")
        await writer.drain()
        assert (await reader.read()).startswith(b"HTTP/1.1 400")
        writer.close()
        s = await scrape(port_of(ctl))
        assert value(s, "mesh_controller_role", role="active") == 1


async def test_a_taken_port_leaves_the_controller_running_without_metrics(
    conn: Connection, settings: Settings
) -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    taken = server.sockets[0].getsockname()[1]
    try:
        async with running_controller(settings, fast_options(metrics_port=taken)) as ctl:
            assert ctl.ingesting and ctl.metrics_port is None
            await send(conn.nc, conn.ns, heartbeat(MAILER, "t1"))
            await eventually(lambda: _true(ctl.stats.heartbeats == 1), what="the heartbeat ingested")
    finally:
        server.close()


async def _true(v: bool) -> bool:
    return v


async def test_mesh_controller_serves_metrics_and_no_metrics_turns_them_off(
    conn: Connection, settings: Settings, tmp_path: Path
) -> None:
    port, other = free_port(), free_port()
    on = ControllerProcess(settings, tmp_path / "on.log", "--metrics-port", str(port), "--lease-ttl", "1.5")
    off = ControllerProcess(settings, tmp_path / "off.log", "--no-metrics", "--metrics-port", str(other))
    try:

        async def serving() -> Samples | None:
            with contextlib.suppress(aiohttp.ClientError):
                return await scrape(port)
            return None

        s = await eventually(serving, what="mesh controller's /metrics")
        assert value(s, "mesh_controller_nats_connected") == 1
        assert {dict(labels)["role"] for (name, labels) in s if name == "mesh_controller_role"} <= {
            "starting",
            "active",
            "standby",
        }
        with pytest.raises(aiohttp.ClientError):
            await scrape(other)
    finally:
        assert on.terminate() == 0
        assert off.terminate() == 0

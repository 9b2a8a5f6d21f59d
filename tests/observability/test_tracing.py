"""OpenTelemetry (agent-mesh[otel]): a kill is one trace from the command through the KV write to
every instance's halt and acknowledgement, checked with the SDK's in-memory exporter."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agent_sdk import AsyncAgent
from mesh.client.operator import AsyncMesh
from mesh.protocol.codec import decode
from mesh.protocol.models import KillRecord, Status
from mesh.runtime import tracing
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection
from tests.integration.controller_helpers import eventually, fast_options, running_controller, wait_status
from tests.integration.sdk_helpers import audit_events

pytestmark = pytest.mark.timeout(60)

MAILER = "agent://acme/prod/mailer"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_provider(provider)
    try:
        yield exporter
    finally:
        tracing.use_provider(None)
        provider.shutdown()


def named(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


async def test_a_kill_is_one_trace_down_to_every_halt(
    conn: Connection, settings: Settings, spans: InMemorySpanExporter
) -> None:
    agents = [await AsyncAgent(MAILER, instance=f"t{i}", settings=settings).start() for i in range(2)]

    async def pass_safe_points(agent: AsyncAgent) -> None:
        while True:
            await agent.heartbeat()
            await agent.sleep(0.02)

    loops = [asyncio.create_task(pass_safe_points(a)) for a in agents]
    try:
        # with the controller's records the kill knows whom to expect, and returns when all answered
        async with running_controller(settings, fast_options()), AsyncMesh(settings) as mesh:
            for a in agents:
                await wait_status(conn.js, conn.ns, f"acme.prod.mailer.{a.instance}", Status.ACTIVE)
            report = await mesh.kill(MAILER, reason="trace me", wait=10.0)
        assert report.acked == 2 and not report.missing

        async def two_halts() -> tuple[ReadableSpan, ...] | None:
            got = spans.get_finished_spans()
            return got if len(named(got, "mesh.instance.halt")) == 2 else None

        finished = await eventually(two_halts, what="both instances' halt spans")
    finally:
        for task in loops:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        for a in agents:
            with contextlib.suppress(Exception):
                await a.stop()

    (kill,) = named(finished, "mesh.kill")
    (write,) = named(finished, "mesh.kill.kv_write")
    halts = named(finished, "mesh.instance.halt")
    acks = named(finished, "mesh.kill.ack")
    assert kill.context is not None and kill.parent is None
    trace_id, kill_id = kill.context.trace_id, kill.context.span_id
    assert {s.context.trace_id for s in [kill, write, *halts, *acks] if s.context} == {trace_id}
    for child in [write, *halts, *acks]:
        assert child.parent is not None and child.parent.span_id == kill_id, child.name
    assert sorted(str(h.attributes["mesh.instance"]) for h in halts if h.attributes) == ["t0", "t1"]
    assert all(h.attributes and h.attributes["mesh.acked"] is True for h in halts)
    assert sorted(str(a.attributes["mesh.instance"]) for a in acks if a.attributes) == ["t0", "t1"]
    assert kill.attributes and kill.attributes["mesh.command_id"] == report.command_id
    assert write.attributes and write.attributes["mesh.revision"] == report.revision

    # the context travelled in the record and comes back in each ack, as W3C traceparent headers
    kv = await conn.js.key_value(conn.ns.control_bucket)
    record = decode(KillRecord, (await kv.get("acme.prod.mailer")).value or b"")
    assert record.trace is not None
    assert record.trace["traceparent"].startswith(f"00-{trace_id:032x}-{kill_id:016x}-")
    halted = [e for e in await audit_events(conn, "halted") if e.command_id == report.command_id]
    halt_ids = {h.context.span_id for h in halts if h.context}
    carried = {int(e.data["trace"]["traceparent"].split("-")[2], 16) for e in halted}
    assert len(halted) == 2 and carried == halt_ids


async def test_without_a_provider_nothing_is_carried(conn: Connection, settings: Settings) -> None:
    async with (
        running_controller(settings, fast_options()),
        AsyncAgent(MAILER, instance="n1", settings=settings) as agent,
        AsyncMesh(settings) as mesh,
    ):
        stop = asyncio.Event()

        async def pass_safe_points() -> None:
            with contextlib.suppress(Exception):
                while not stop.is_set():
                    await agent.heartbeat()
                    await agent.sleep(0.02)

        loop = asyncio.create_task(pass_safe_points())
        await wait_status(conn.js, conn.ns, "acme.prod.mailer.n1", Status.ACTIVE)
        report = await mesh.kill(MAILER, reason="untraced", wait=5.0)
        stop.set()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(loop, 5)
    assert report.acked == 1
    kv = await conn.js.key_value(conn.ns.control_bucket)
    assert decode(KillRecord, (await kv.get("acme.prod.mailer")).value or b"").trace is None
    (ack,) = [e for e in await audit_events(conn, "halted") if e.command_id == report.command_id]
    assert "trace" not in ack.data

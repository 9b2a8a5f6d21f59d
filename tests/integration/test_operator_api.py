"""The operator API against a real nats-server and real SDK agents: kill, resume, list, status, events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from mesh import AsyncMesh, EventType, InvalidTarget, Mesh, NotFound, Status
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection
from tests.heartbeats import watching
from tests.integration.controller_helpers import fast_options, running_controller
from tests.operator_support import URI, Worker, listed_by_a_controller, register, wait_until
from tests.waiting import HANG, SILENT_WINDOW

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
async def mesh(conn: Connection, settings: Settings) -> AsyncIterator[AsyncMesh]:
    async with AsyncMesh(settings) as m:
        yield m


NAMES = ("us-central1-a", "us-east1-b")


@pytest.fixture
async def workers(conn: Connection, settings: Settings) -> AsyncIterator[list[Worker]]:
    """Two live workers, listed by a real controller that has stopped again (controller down)."""
    started = [await Worker(settings, URI, name).start() for name in NAMES]
    await listed_by_a_controller(settings, conn, [(URI, n) for n in NAMES])
    yield started
    for w in started:
        await w.stop()


async def test_kill_with_controller_down_collects_every_ack(
    conn: Connection, mesh: AsyncMesh, workers: list[Worker]
) -> None:
    await wait_until(lambda: all(w.done > 2 for w in workers), what="the workers to work")
    # No controller runs; the report expects what the last one listed and returns once all acked
    # (30 s only bounds a hang: no ack has to arrive within any window).
    report = await mesh.kill(URI, reason="broken template", wait=HANG)
    assert report.expected == 2
    assert {r.instance for r in report.instances} == set(NAMES)
    assert report.acked == 2 and report.missing == [] and report.complete
    assert report.revision > 0 and report.actor == "tester"
    for row in report.instances:
        assert row.status == "paused"
        assert row.agent_uri == URI
        assert row.checkpoint["done"] in (row.metadata["done"], row.metadata["done"] + 1)
    assert report.totals["done"] == sum(r.metadata["done"] for r in report.instances)
    frozen = [w.done for w in workers]
    # Paused, yet alive: each goes on heartbeating (its loop ran), and does no more work.
    async with watching(conn.nc, conn.ns) as hbs:
        await hbs.more(list(NAMES), n=2)
    assert [w.done for w in workers] == frozen

    kills = [e async for e in mesh.events(URI) if e.type is EventType.KILL]
    assert len(kills) == 1
    assert kills[0].command_id == report.command_id and kills[0].actor == "tester"
    assert kills[0].revision == report.revision and kills[0].reason == "broken template"


async def test_kill_returns_when_every_expected_instance_acked_and_lists_silent_ones(
    conn: Connection, mesh: AsyncMesh, settings: Settings
) -> None:
    started = [await Worker(settings, URI, name).start() for name in NAMES]
    try:
        await listed_by_a_controller(
            settings, conn, [(URI, n) for n in NAMES],
            ghosts=[(URI, "ghost"), ("agent://acme/prod/other", "elsewhere")],
        )  # fmt: skip
        # The ghost never acks, so the report waits out its window (SILENT_WINDOW).
        report = await mesh.kill(URI, wait=SILENT_WINDOW)
    finally:
        for w in started:
            await w.stop()
    assert report.expected == 3
    assert report.acked == 2
    assert [(m.instance, m.status) for m in report.missing] == [("ghost", "active")]
    assert report.missing[0].last_seen is not None
    shape = report.to_json()
    assert set(shape) == {"target", "command_id", "instances", "acked", "missing"}
    assert set(shape["instances"][0]) == {"agent_uri", "instance", "status", "metadata", "checkpoint"}


@pytest.fixture
async def controller(settings: Settings, workers: list[Worker]) -> AsyncIterator[None]:
    """A controller running through the test: a resume expects the instances it lists as paused."""
    async with running_controller(settings, fast_options(lost_after=600.0)):
        yield


async def _all_paused(mesh: AsyncMesh) -> bool:
    rows = await mesh.list_instances(URI)
    return {r.instance for r in rows if r.status is Status.PAUSED} == set(NAMES)


async def test_kill_is_idempotent_and_resume_clears_exactly_its_record(
    mesh: AsyncMesh, workers: list[Worker], controller: None
) -> None:
    # The controller lists both workers, so each report returns once both acked (HANG bounds a hang).
    first = await mesh.kill(URI, wait=HANG)
    again = await mesh.kill(URI, wait=HANG)
    assert first.command_id != again.command_id and again.revision > first.revision
    assert [h.target for h in await mesh.records()] == [URI]

    wide = await mesh.kill("agent://acme/*/*", reason="freeze acme", wait=HANG)
    assert wide.revision > again.revision
    held = await mesh.resume(URI, reason="fixed", wait=HANG)  # expects nobody: returns at once
    assert held.cleared
    assert [h.target for h in held.still_held_by] == ["agent://acme/*/*"]
    assert held.still_held_by[0].record.reason == "freeze acme"
    assert not held.complete
    assert all(w.agent.killed for w in workers)

    before = [w.done for w in workers]
    await wait_until(lambda: _all_paused(mesh), what="the controller to list both as paused")
    resumed = await mesh.resume("agent://acme/*/*", wait=HANG)  # returns once both resumed
    assert resumed.still_held_by == [] and resumed.complete
    assert {r.instance for r in resumed.instances} == {"us-central1-a", "us-east1-b"}
    await wait_until(lambda: all(w.done > b for w, b in zip(workers, before, strict=True)))
    assert await mesh.records() == []

    twice = await mesh.resume("agent://acme/*/*", wait=0.2)
    assert not twice.cleared and twice.complete


async def test_kill_of_one_instance_leaves_the_other_running(mesh: AsyncMesh, workers: list[Worker]) -> None:
    report = await mesh.kill(URI, instance="us-east1-b", wait=HANG)  # returns once it acked
    assert [r.instance for r in report.instances] == ["us-east1-b"]
    running = workers[0].done
    await wait_until(lambda: workers[0].done > running + 3)
    assert workers[1].agent.killed and not workers[0].agent.killed
    await mesh.resume(f"{URI}#us-east1-b", wait=0)
    await wait_until(lambda: not workers[1].agent.killed)


async def test_list_get_and_status(conn: Connection, mesh: AsyncMesh, workers: list[Worker]) -> None:
    await register(conn, URI, "us-central1-a", metadata={"batch": 3})
    await register(conn, URI, "old", Status.LOST, age=120)
    await register(conn, "agent://acme/staging/mailer", "s1")
    await register(conn, "agent://other/prod/mailer", "o1", Status.PAUSED)

    everything = await mesh.list_instances()
    assert [(s.agent_uri, s.instance) for s in everything] == [
        ("agent://acme/prod/mailer", "old"),
        ("agent://acme/prod/mailer", "us-central1-a"),
        ("agent://acme/prod/mailer", "us-east1-b"),
        ("agent://acme/staging/mailer", "s1"),
        ("agent://other/prod/mailer", "o1"),
    ]
    assert [s.instance for s in await mesh.list_instances("agent://acme/*/mailer")] == [
        "old",
        "us-central1-a",
        "us-east1-b",
        "s1",
    ]
    assert [s.instance for s in await mesh.list_instances(status="paused")] == ["o1"]

    one = await mesh.get(f"{URI}#us-central1-a")
    assert one.metadata == {"batch": 3}
    with pytest.raises(NotFound):
        await mesh.get(URI, instance="nobody")
    with pytest.raises(InvalidTarget):
        await mesh.get(URI)

    await mesh.kill("agent://acme/*/*", reason="audit", wait=1.0)
    await wait_until(lambda: all(w.done > 0 for w in workers))
    status = await mesh.status(URI)
    assert status.killed and [r.target for r in status.records] == ["agent://acme/*/*"]
    assert {i.instance for i in status.instances} == {"old", "us-central1-a", "us-east1-b"}
    await wait_until(lambda: _has_checkpoints(mesh, {"us-central1-a", "us-east1-b"}))
    with pytest.raises(InvalidTarget):
        await mesh.status("agent://acme/*/mailer")


async def _has_checkpoints(mesh: AsyncMesh, names: set[str]) -> bool:
    status = await mesh.status(URI)
    return names <= set(status.checkpoints) and all(status.checkpoints[n].state["done"] >= 1 for n in names)


async def test_events_filter_by_pattern_and_since(mesh: AsyncMesh, workers: list[Worker]) -> None:
    assert (await mesh.kill("agent://acme/*/*", wait=HANG)).acked == 2
    await mesh.kill("agent://zeta/prod/x", wait=0)
    await mesh.resume("agent://acme/*/*", wait=0)

    async def halted_stored() -> bool:
        return {e.instance async for e in mesh.events(URI) if e.type is EventType.HALTED} == set(NAMES)

    await wait_until(halted_stored, what="both halted events in the stream")

    mine = [e async for e in mesh.events(URI)]
    types = [e.type for e in mine]
    assert EventType.KILL in types and EventType.HALTED in types and EventType.RESUME in types
    assert all(e.target != "agent://zeta/prod/x" for e in mine)
    zeta = [e async for e in mesh.events("agent://zeta/*/*")]
    assert [e.type for e in zeta] == [EventType.KILL]
    only_one = [e async for e in mesh.events(f"{URI}#us-east1-b") if e.type is EventType.HALTED]
    assert {e.instance for e in only_one} == {"us-east1-b"}
    assert [e async for e in mesh.events(since="0s")] == []


async def test_events_follow_sees_new_events(mesh: AsyncMesh) -> None:
    """A sentinel first: once the follower has seen it, it is caught up, so the kill and resume
    after it can only reach it as new events (not as history read at its start)."""
    seen: list[str] = []

    async def follow() -> None:
        async for event in mesh.events("agent://acme/*/*", follow=True):
            seen.append(f"{event.type.value} {event.target}")
            if len(seen) == 3:
                return

    task = asyncio.create_task(follow())
    await mesh.kill("agent://acme/prod/sentinel", wait=0)
    await wait_until(lambda: seen or task.done(), what="the follower to see the sentinel")
    await mesh.kill(URI, wait=0)
    await mesh.resume(URI, wait=0)
    await asyncio.wait_for(task, HANG)
    assert seen == ["kill agent://acme/prod/sentinel", f"kill {URI}", f"resume {URI}"]


async def test_subscribe_audit_resumes_where_it_left_off(mesh: AsyncMesh) -> None:
    for n in range(3):
        await mesh.kill(f"agent://acme/prod/a{n}", wait=0)
    got: list[str | None] = []
    async for event in mesh.subscribe_audit(durable="siem"):
        got.append(event.target)
        if len(got) == 2:
            break
    assert got == ["agent://acme/prod/a0", "agent://acme/prod/a1"]
    await mesh.kill("agent://acme/prod/a3", wait=0)
    rest: list[str | None] = []
    async for event in mesh.subscribe_audit(durable="siem"):
        rest.append(event.target)
        if len(rest) == 2:
            break
    assert rest == ["agent://acme/prod/a2", "agent://acme/prod/a3"]


def test_sync_facade(conn: Connection, settings: Settings) -> None:
    with Mesh(settings) as m:
        report = m.kill("agent://acme/dev/*", reason="sync", wait=0.2)
        assert report.acked == 0 and report.revision > 0
        assert [h.target for h in m.records()] == ["agent://acme/dev/*"]
        assert [e.type for e in m.events("agent://acme/dev/x")] == [EventType.KILL]
        assert m.resume("agent://acme/dev/*", wait=0.1).cleared
        assert m.list_instances() == []

"""The real ``mesh`` entry point in subprocesses against a real server: output, --json shapes, exit codes."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator

import pytest

from mesh.client.operator import AsyncMesh
from mesh.protocol.models import Status
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection
from tests.integration.controller_helpers import fast_options, running_controller
from tests.operator_support import MESH, URI, Worker, listed_by_a_controller, register, wait_until
from tests.waiting import SILENT_WINDOW

pytestmark = pytest.mark.timeout(120)


def env_for(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NATS_", "MESH_"))}
    env.update(
        {"NATS_URL": settings.nats_url, "MESH_PREFIX": settings.prefix, "MESH_ACTOR": "alice", **extra}
    )
    return env


async def mesh_cli(settings: Settings, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        MESH, *args, env=env_for(settings), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


NAMES = ("us-central1-a", "us-east1-b")


@pytest.fixture
async def workers(conn: Connection, settings: Settings) -> AsyncIterator[list[Worker]]:
    """Two live workers, listed by a real controller that has stopped again."""
    started = [await Worker(settings, URI, name).start() for name in NAMES]
    await listed_by_a_controller(settings, conn, [(URI, n) for n in NAMES])
    yield started
    for w in started:
        await w.stop()


async def test_kill_prints_a_line_per_instance_and_exits_0(settings: Settings, workers: list[Worker]) -> None:
    code, out, err = await mesh_cli(settings, "kill", URI, "--reason", "broken link", "--wait", "10")
    assert code == 0, err
    lines = out.splitlines()
    assert "Kill signal sent to 2 instances of agent://acme/prod/mailer" in lines[0]
    assert "by alice" in lines[0]
    assert any("us-central1-a: PAUSED (done " in line for line in lines)
    assert any("us-east1-b:    PAUSED (done " in line for line in lines)
    assert "All 2 instances halted." in lines[-1] and "Total: done " in lines[-1]
    assert err == ""


async def test_kill_json_and_exit_3_when_an_expected_instance_is_silent(
    conn: Connection, settings: Settings
) -> None:
    started = [await Worker(settings, URI, name).start() for name in NAMES]
    try:
        await listed_by_a_controller(settings, conn, [(URI, n) for n in NAMES], ghosts=[(URI, "ghost")])
        # The ghost never acks, so each report waits out its window (SILENT_WINDOW).
        window = f"{SILENT_WINDOW:g}"
        code, out, _ = await mesh_cli(settings, "kill", URI, "--json", "--wait", window)
        assert code == 3
        report = json.loads(out)
        assert set(report) == {"target", "command_id", "instances", "acked", "missing"}
        assert report["target"] == URI and report["acked"] == 2
        assert {r["instance"] for r in report["instances"]} == set(NAMES)
        assert set(report["instances"][0]) == {"agent_uri", "instance", "status", "metadata", "checkpoint"}
        assert [m["instance"] for m in report["missing"]] == ["ghost"]

        code, out, _ = await mesh_cli(settings, "kill", URI, "--wait", window)
        assert code == 3
        assert "1 silent" in out and f"ghost: no acknowledgement within {window}s (last seen" in out
    finally:
        for w in started:
            await w.stop()


async def test_resume_still_held_exits_3_then_clears(settings: Settings, workers: list[Worker]) -> None:
    # A controller runs: the last resume expects the instances it lists as paused, and returns
    # as soon as both resumed (the --wait values only bound a hang).
    async with running_controller(settings, fast_options(lost_after=600.0)), AsyncMesh(settings) as op:
        assert (await mesh_cli(settings, "kill", URI, "--wait", "30"))[0] == 0
        assert (await mesh_cli(settings, "kill", "agent://acme/*/*", "--reason", "freeze", "--wait", "30"))[
            0
        ] == 0
        code, out, _ = await mesh_cli(settings, "resume", URI, "--wait", "0.5")
        assert code == 3
        assert "Still halted by agent://acme/*/*" in out and "freeze" in out

        async def paused() -> bool:
            rows = await op.list_instances(URI)
            return {r.instance for r in rows if r.status is Status.PAUSED} == set(NAMES)

        await wait_until(paused, what="the controller to list both as paused")
        code, out, _ = await mesh_cli(settings, "resume", "agent://acme/*/*", "--json", "--wait", "30")
    assert code == 0
    report = json.loads(out)
    assert report["still_held_by"] == [] and report["acked"] == 2


async def test_list_table_and_json(conn: Connection, settings: Settings) -> None:
    await register(conn, URI, "a1", metadata={"batch": 22, "sent": 2147})
    await register(conn, URI, "a2", Status.PAUSED)
    await register(conn, "agent://acme/dev/x", "d1", Status.STALE)
    code, out, _ = await mesh_cli(settings, "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["AGENT", "INSTANCE", "STATUS", "LAST", "SEEN", "METADATA"]
    assert "batch 22, sent 2147" in out
    assert lines[-1] == "3 instances: 1 active, 1 paused, 1 stale"

    code, out, _ = await mesh_cli(settings, "list", "agent://acme/prod/*", "--status", "paused", "--json")
    assert code == 0
    rows = json.loads(out)
    assert [set(r) for r in rows] == [{"agent_uri", "instance", "status", "last_seen", "metadata"}]
    assert rows[0]["instance"] == "a2" and rows[0]["status"] == "paused"


async def test_events_lines_and_json(conn: Connection, settings: Settings) -> None:
    assert (await mesh_cli(settings, "kill", URI, "--reason", "r1", "--wait", "0"))[0] == 0
    assert (await mesh_cli(settings, "resume", URI, "--wait", "0"))[0] == 0
    code, out, _ = await mesh_cli(settings, "events", URI, "--since", "1h")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 2
    assert " kill " in lines[0] and "by alice" in lines[0] and "r1" in lines[0]
    assert " resume " in lines[1]
    code, out, _ = await mesh_cli(settings, "events", "--json")
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["type"] for e in events] == ["kill", "resume"]
    assert set(events[0]) == {
        "id",
        "time",
        "type",
        "target",
        "agent_uri",
        "instance",
        "actor",
        "reason",
        "command_id",
        "data",
    }
    code, out, _ = await mesh_cli(settings, "events", "agent://other/*/*")
    assert code == 0 and out == ""


async def test_status_shows_records_instances_and_checkpoints(
    conn: Connection, settings: Settings, workers: list[Worker]
) -> None:
    assert (await mesh_cli(settings, "kill", "agent://acme/*/*", "--reason", "audit", "--wait", "30"))[0] == 0
    code, out, _ = await mesh_cli(settings, "status", URI)
    assert code == 0
    assert out.splitlines()[0] == URI
    assert "KILLED: 1 kill record(s) in force" in out and "agent://acme/*/*  by alice" in out
    assert "us-central1-a" in out and '{"done": ' in out
    code, out, _ = await mesh_cli(settings, "status", URI, "--json")
    data = json.loads(out)
    assert [r["target"] for r in data["records"]] == ["agent://acme/*/*"]
    assert {i["instance"] for i in data["instances"]} == {"us-central1-a", "us-east1-b"}


async def test_init_is_idempotent(settings: Settings) -> None:
    code, out, _ = await mesh_cli(settings, "init")
    assert code == 0 and "created" in out
    code, out, _ = await mesh_cli(settings, "init")
    assert code == 0 and "created" not in out and "exists" in out

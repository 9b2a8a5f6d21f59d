"""The real components, each under its own role, against nats.conf: nothing they need is denied,
and what a role may not do fails with one clear line (API and CLI)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent_sdk import AgentKilled, AsyncAgent
from controller import ControllerOptions, serve
from mesh.client.operator import AsyncMesh
from mesh.errors import PermissionDenied
from mesh.protocol.models import EventType, Status
from mesh.transport import connection as mesh_connection
from mesh.transport import natserrors
from mesh.transport.connection import translate_error

from .conftest import SecureServer

pytestmark = pytest.mark.timeout(120)

URI = "agent://acme/prod/e2e"
MESH_CLI = str(Path(sys.executable).parent / "mesh")
FAST = ControllerOptions(lost_after=20.0, refresh_every=0.5, sweep_every=0.2, flush_every=0.05, lease_ttl=3.0)


async def eventually(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def test_every_component_works_under_its_own_role(secure_server: SecureServer) -> None:
    natserrors._VIOLATIONS.clear()
    stop = asyncio.Event()
    ctl = asyncio.create_task(serve(secure_server.settings("controller"), stop=stop, options=FAST))
    agent = AsyncAgent(
        URI,
        instance="i1",
        settings=secure_server.settings("agent"),
        heartbeat_interval=0.3,
        on_kill="pause",
        hard_kill=False,
    )
    await agent.start()
    steps = 0

    async def work() -> None:  # an agent loop: its safe points are where the kill lands
        nonlocal steps
        while True:
            await agent.heartbeat({"steps": steps})
            steps += 1
            await agent.checkpoint({"step": steps})
            await agent.sleep(0.05)

    worker = asyncio.create_task(work())
    try:
        async with AsyncMesh(secure_server.settings("operator")) as op:

            async def listed() -> bool:
                rows = await op.list_instances(URI)
                return any(r.instance == "i1" and r.status is Status.ACTIVE for r in rows)

            await eventually(listed, what="the controller to list the instance")

            report = await op.kill(URI, reason="e2e", wait=10.0)
            assert [(r.instance, r.status) for r in report.instances] == [("i1", "paused")]
            assert agent.killed

            async def paused() -> bool:
                return (await op.get(URI, "i1")).status is Status.PAUSED

            await eventually(paused, what="status paused")
            await op.resume(URI, reason="e2e done", wait=5.0)
            await eventually(lambda: not agent.killed, what="the agent to resume")
            resumed_at = steps
            await eventually(lambda: steps > resumed_at, what="the loop to continue")

        async with AsyncMesh(secure_server.settings("auditor")) as auditor:
            types: set[EventType] = set()
            async for event in auditor.events(URI):
                types.add(event.type)
            assert {EventType.STARTED, EventType.KILL, EventType.HALTED, EventType.RESUME} <= types
            denied = [text for _, _, text in natserrors._VIOLATIONS]
            assert denied == [], f"a role was refused something it needs: {denied}"
            with pytest.raises(
                PermissionDenied, match=r"^permission denied: this user may not write kill records$"
            ):
                await auditor.kill(URI, wait=0.5)
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
        await agent.stop()
        stop.set()
        await asyncio.wait_for(ctl, 20)


async def test_agent_credentials_cannot_kill_or_resume(secure_server: SecureServer) -> None:
    async with AsyncMesh(secure_server.settings("operator")) as op:
        await op.kill("agent://acme/prod/held", wait=0.2)
    async with AsyncMesh(secure_server.settings("agent")) as as_agent:
        with pytest.raises(PermissionDenied) as info:
            await as_agent.kill("agent://*/*/*", reason="rogue agent", wait=0.5)
        assert str(info.value) == "permission denied: this user may not write kill records"
        with pytest.raises(PermissionDenied):
            await as_agent.resume("agent://acme/prod/held", wait=0.5)
        held = await as_agent.records("agent://acme/prod/held")  # still in force; reading is allowed
        assert [h.key for h in held] == ["acme.prod.held"]


async def test_a_killed_agent_with_agent_credentials_stays_killed(secure_server: SecureServer) -> None:
    """The SDK itself (agent role) cannot clear its own kill record: it stays halted."""
    async with AsyncMesh(secure_server.settings("operator")) as op:
        await op.kill("agent://acme/prod/stuck", wait=0.2)
    agent = AsyncAgent(
        "agent://acme/prod/stuck",
        instance="i1",
        settings=secure_server.settings("agent"),
        heartbeat_interval=0.3,
        hard_kill=False,
    )
    await agent.start()
    try:
        assert agent.killed
        with pytest.raises(AgentKilled):
            await agent.heartbeat()
        kv = await agent._core.conn.js.key_value("mesh_control")  # what a hostile agent would try
        natserrors._VIOLATIONS.clear()
        with pytest.raises(PermissionDenied):
            await _as_mesh_does(kv.delete("acme.prod.stuck"), "$KV.mesh_control.acme.prod.stuck")
        assert mesh_connection.recent_permission_violation("mesh_control") is not None
        # The record itself survived: read back with operator credentials, still in force.
        async with AsyncMesh(secure_server.settings("operator")) as op:
            assert [h.key for h in await op.records("agent://acme/prod/stuck")] == ["acme.prod.stuck"]
        assert agent.killed
    finally:
        await agent.stop()


async def _as_mesh_does(aw: Any, subject: str) -> Any:
    """A raw nats-py call, its error mapped as mesh code maps it (a denied publish goes unanswered)."""
    try:
        return await asyncio.wait_for(aw, 2.0)
    except Exception as exc:
        raise translate_error(exc, "delete kill records", subject=subject, timeout=2.0) from exc


def run_cli_kill_as_agent(secure_server: SecureServer) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "NATS_URL": secure_server.url,
        "NATS_USER": "agent",
        "NATS_PASSWORD": secure_server.passwords["agent"],
        "MESH_PREFIX": "mesh",
    }
    return subprocess.run(
        [MESH_CLI, "kill", "agent://acme/prod/mailer", "--reason", "not allowed", "--wait", "1"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_cli_kill_with_agent_credentials(secure_server: SecureServer) -> None:
    result = run_cli_kill_as_agent(secure_server)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "permission denied: this user may not " in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


def test_cli_kill_with_agent_credentials_names_kill_records(secure_server: SecureServer) -> None:
    result = run_cli_kill_as_agent(secure_server)
    assert result.returncode == 1
    assert result.stderr.strip() == "mesh: error: permission denied: this user may not write kill records"


async def spend_until_stopped(agent: AsyncAgent, sent: list[int]) -> None:
    while True:
        await agent.spend(emails=1)
        sent.append(1)


async def test_spending_under_the_agent_role_holds_the_budget(secure_server: SecureServer) -> None:
    """Quota leases with every component under its role: the agent asks, the controller grants
    from its ledger, the operator reads usage; the budget is gone and the policy stops the agent."""
    natserrors._VIOLATIONS.clear()
    uri = "agent://acme/prod/e2e-budget"
    stop = asyncio.Event()
    ctl = asyncio.create_task(serve(secure_server.settings("controller"), stop=stop, options=FAST))
    try:
        async with AsyncMesh(secure_server.settings("operator")) as op:
            await op.set_policy("e2e-cap", uri, ["emails<=30"])
            agent = AsyncAgent(uri, instance="b1", settings=secure_server.settings("agent"), hard_kill=False)
            await agent.start()
            sent: list[int] = []
            try:
                with pytest.raises(AgentKilled) as info:
                    await spend_until_stopped(agent, sent)
                assert len(sent) == 30
                assert info.value.record is not None and info.value.record.actor == "policy:e2e-cap"
            finally:
                await agent.stop()

            async def used_up() -> bool:
                report = await op.usage(uri)
                rows = [(b.spent, b.leased_out, b.left) for a in report.agents for b in a.budgets]
                return rows == [(30.0, 0.0, 0.0)]

            await eventually(used_up, what="usage to show the budget spent")
        assert mesh_connection.recent_permission_violation() is None
    finally:
        stop.set()
        await asyncio.wait_for(ctl, 20)


async def test_a_usage_policy_under_the_roles(secure_server: SecureServer) -> None:
    """README's policies with each component under its nats.conf role: the operator stores the
    policy, the controller reads it and writes the kill record and the policy_violation event,
    the agent is killed, and the auditor reads both events."""
    natserrors._VIOLATIONS.clear()
    uri = "agent://acme/prod/e2e-policy"
    stop = asyncio.Event()
    ctl = asyncio.create_task(
        serve(
            secure_server.settings("controller"),
            stop=stop,
            options=dataclasses.replace(FAST, policy_reload_every=0.2),
        )
    )
    try:
        async with AsyncMesh(secure_server.settings("operator")) as op:
            await op.set_policy("e2e-rate", uri, ["emails<=5"])
            assert "e2e-rate" in [p.name for p in await op.list_policies()]
            agent = AsyncAgent(uri, instance="p1", settings=secure_server.settings("agent"), hard_kill=False,
                               heartbeat_interval=0.2)  # fmt: skip
            await agent.start()
            try:
                agent.record(emails=9)
                await eventually(lambda: agent.killed, what="the policy to kill the agent")
                record = agent.kill_record
                assert record is not None and record.actor == "policy:e2e-rate"
                assert record.reason is not None and "emails<=5" in record.reason
            finally:
                await agent.stop()
            assert [h.key for h in await op.records(uri)] == ["acme.prod.e2e-policy"]
        async with AsyncMesh(secure_server.settings("auditor")) as auditor:

            async def both_events() -> list[Any]:
                events = [e async for e in auditor.events(uri)]
                return [e for e in events if e.type in (EventType.POLICY_VIOLATION, EventType.KILL)]

            found = await eventually(lambda: _two(both_events()), what="policy_violation and kill events")
            assert {e.actor for e in found} == {"policy:e2e-rate"}
        assert mesh_connection.recent_permission_violation() is None
    finally:
        stop.set()
        await asyncio.wait_for(ctl, 20)
        async with AsyncMesh(secure_server.settings("operator")) as op:
            await op.remove_policy("e2e-rate")


async def _two(aw: Any) -> list[Any] | None:
    found = await aw
    return found if len(found) == 2 else None

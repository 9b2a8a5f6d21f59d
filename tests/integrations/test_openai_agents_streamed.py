"""OpenAI Agents SDK streamed runs under the kill switch: pause holds the stream, raise ends it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agent_sdk import AgentKilled
from agent_sdk.integrations.openai_agents import CHECKPOINT_KEY, KillSwitch
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection
from tests.integration.sdk_helpers import delete_kill
from tests.integrations.helpers import ToolLog, guarded_agent, kill_mid_tool, kill_while_thinking, wait_ack
from tests.integrations.oa_fakes import CountingModel, make_agent

URI = "agent://acme/prod/streamer"
STEPS = 4


async def _drain(stream: Any) -> list[Any]:
    return [event async for event in stream.stream_events()]


async def test_a_streamed_run_paused_mid_tool_holds_its_stream_and_resume_runs_each_step_once(
    conn: Connection, settings: Settings
) -> None:
    model, log = CountingModel(STEPS), ToolLog()
    log.block.add(1)
    async with guarded_agent(URI, settings, "s1", "pause") as mesh:
        stream = await KillSwitch(mesh).run_streamed(make_agent(model, log), "go")
        events = asyncio.create_task(_drain(stream))
        key, record = await kill_mid_tool(conn, log, URI, grace=600.0)
        ack = await wait_ack(conn, record.command_id)
        assert ack.data["status"] == "paused"
        assert ("cancelled", 1) in [(k, n) for k, n, _ in log.events]
        assert not events.done() and log.started_after(ack.time) == []
        await delete_kill(conn, key)
        streamed = await asyncio.wait_for(events, 30)
        assert streamed  # the SDK's own events came through
        assert stream.final_output == f"did {STEPS} steps"
        assert log.ends() == list(range(STEPS)) and log.starts() == [0, 1, 1, 2, 3]


async def test_a_streamed_run_killed_mid_tool_ends_its_stream_with_agent_killed_and_a_restart_continues(
    conn: Connection, settings: Settings
) -> None:
    model, log = CountingModel(STEPS), ToolLog()
    log.block.add(1)
    async with guarded_agent(URI, settings, "s2", "raise") as mesh:
        stream = await KillSwitch(mesh).run_streamed(make_agent(model, log), "go")
        events = asyncio.create_task(_drain(stream))
        key, record = await kill_mid_tool(conn, log, URI)
        with pytest.raises(AgentKilled):
            await asyncio.wait_for(events, 30)
        ack = await wait_ack(conn, record.command_id)
        assert ack.data["status"] == "killed"
        assert [(k, n) for k, n, _ in log.events][-1] == ("cancelled", 1)
        assert log.started_after(ack.time) == []
    await delete_kill(conn, key)
    # A restarted instance continues the saved conversation, streamed or not.
    async with guarded_agent(URI, settings, "s2", "raise") as mesh:
        assert mesh.restore()[CHECKPOINT_KEY]["kind"] == "input"
        result = await KillSwitch(mesh).run(make_agent(CountingModel(STEPS), log), "unused")
    assert result.final_output == f"did {STEPS} steps"
    assert log.ends() == list(range(STEPS))


async def test_a_streamed_run_killed_while_the_model_thinks_stops_at_its_tool_call_and_saves_the_run_state(
    conn: Connection, settings: Settings
) -> None:
    model, log = CountingModel(STEPS, hold_at={3}), ToolLog()
    async with guarded_agent(URI, settings, "s3", "raise") as mesh:
        stream = await KillSwitch(mesh).run_streamed(make_agent(model, log), "go")
        events = asyncio.create_task(_drain(stream))
        key, record = await kill_while_thinking(conn, mesh, model, URI)
        with pytest.raises(AgentKilled):
            await asyncio.wait_for(events, 30)
        ack = await wait_ack(conn, record.command_id)
        assert ack.data["status"] == "killed"
        assert log.ends() == [0, 1] and log.started_after(ack.time) == []
    await delete_kill(conn, key)
    fresh = CountingModel(STEPS)
    async with guarded_agent(URI, settings, "s3", "raise") as mesh:
        saved = mesh.restore()[CHECKPOINT_KEY]
        assert saved["kind"] == "run_state" and saved["kill_calls"] == ["call-2"]
        result = await KillSwitch(mesh).run(make_agent(fresh, log), "unused")
    assert result.final_output == f"did {STEPS} steps"
    assert log.ends() == list(range(STEPS)) and fresh.calls == 2

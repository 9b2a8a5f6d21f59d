"""OpenAI Agents SDK under the kill switch: pause and resume, raise, in-flight tools, RunState checkpoints."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from agents import RunHooks, ToolGuardrailFunctionOutput, tool_input_guardrail

from agent_sdk import AgentKilled, AsyncAgent
from agent_sdk.integrations.openai_agents import CHECKPOINT_KEY, KillSwitch
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection
from tests.integration.sdk_helpers import await_until, delete_kill, put_kill
from tests.integrations.helpers import ToolLog, guarded_agent, kill_mid_tool, kill_while_thinking, wait_ack
from tests.integrations.oa_fakes import CountingModel, make_agent

URI = "agent://acme/prod/researcher"
STEPS = 4


async def test_pause_holds_the_next_tool_call_and_resume_runs_every_remaining_one_once(
    conn: Connection, settings: Settings
) -> None:
    model, log = CountingModel(STEPS, hold_at={3}), ToolLog()
    async with guarded_agent(URI, settings, "p1", "pause") as mesh:
        run = asyncio.create_task(KillSwitch(mesh).run(make_agent(model, log), "go"))
        # Killed while the third model call "thinks"; it then answers "work(2)": the tool call is the
        # next safe point.
        key, record = await kill_while_thinking(conn, mesh, model, URI)
        ack = await wait_ack(conn, record.command_id)
        assert ack.data["status"] == "paused"
        assert ack.data["metadata"] == {"turn": 3, "last_tool": "work", "tool_calls": 2, "at": "tool work"}
        assert not run.done() and log.ends() == [0, 1]
        await delete_kill(conn, key)
        result = await asyncio.wait_for(run, 30)
        assert result.final_output == f"did {STEPS} steps"
        assert log.ends() == list(range(STEPS)) and log.starts() == list(range(STEPS))
        assert log.started_after(ack.time) == [2, 3]  # nothing ran between the ack and the resume


async def test_pause_cancels_the_running_tool_and_runs_it_again_after_resume(
    conn: Connection, settings: Settings
) -> None:
    model, log = CountingModel(STEPS), ToolLog()
    log.block.add(1)
    async with guarded_agent(URI, settings, "p2", "pause") as mesh:
        run = asyncio.create_task(KillSwitch(mesh).run(make_agent(model, log), "go"))
        # A long grace: the paused call must not hold the acknowledgement back until it runs out.
        key, record = await kill_mid_tool(conn, log, URI, grace=600.0)
        ack = await wait_ack(conn, record.command_id)
        assert ("cancelled", 1) in [(k, n) for k, n, _ in log.events]
        assert ack.data["status"] == "paused"
        assert ack.data["metadata"] == {"turn": 2, "last_tool": "work", "tool_calls": 1, "at": "tool work"}
        assert log.started_after(ack.time) == []
        await delete_kill(conn, key)
        result = await asyncio.wait_for(run, 30)
        assert result.final_output == f"did {STEPS} steps"
        assert log.ends() == list(range(STEPS))  # every step completed exactly once
        assert log.starts() == [0, 1, 1, 2, 3]  # the cancelled call ran again, from its start


async def test_raise_at_a_tool_call_saves_the_run_state_and_the_next_run_continues_it(
    conn: Connection, settings: Settings
) -> None:
    model, log = CountingModel(STEPS, hold_at={3}), ToolLog()
    async with guarded_agent(URI, settings, "r1", "raise") as mesh:
        run = asyncio.create_task(KillSwitch(mesh).run(make_agent(model, log), "go"))
        key, record = await kill_while_thinking(conn, mesh, model, URI)
        with pytest.raises(AgentKilled):
            await asyncio.wait_for(run, 30)
        ack = await wait_ack(conn, record.command_id)
        assert ack.data["status"] == "killed"
        saved = ack.data["checkpoint"][CHECKPOINT_KEY]
        assert saved["kind"] == "run_state" and saved["kill_calls"] == ["call-2"]
        assert saved["progress"]["tool_calls"] == 2
        assert log.ends() == [0, 1] and log.started_after(ack.time) == []
    await delete_kill(conn, key)

    # The same instance started again (as a restarted process would) continues the RunState.
    fresh = CountingModel(STEPS)
    async with guarded_agent(URI, settings, "r1", "raise") as mesh:
        result = await KillSwitch(mesh).run(make_agent(fresh, log), "this input is not used")
    assert result.final_output == f"did {STEPS} steps"
    assert log.ends() == list(range(STEPS))
    assert fresh.calls == 2  # the approved work(2) ran without asking the model again; then 3, then done


async def test_raise_mid_tool_cancels_it_and_the_next_run_asks_for_it_again(
    conn: Connection, settings: Settings
) -> None:
    model, log = CountingModel(STEPS), ToolLog()
    log.block.add(1)
    async with guarded_agent(URI, settings, "r2", "raise") as mesh:
        run = asyncio.create_task(KillSwitch(mesh).run(make_agent(model, log), "go"))
        key, record = await kill_mid_tool(conn, log, URI)
        with pytest.raises(AgentKilled):
            await asyncio.wait_for(run, 30)
        ack = await wait_ack(conn, record.command_id)
        assert ack.data["metadata"]["tool_calls"] == 1 and ack.data["metadata"]["last_tool"] == "work"
        assert [(k, n) for k, n, _ in log.events][-1] == ("cancelled", 1)
        assert log.started_after(ack.time) == []
    await delete_kill(conn, key)
    async with guarded_agent(URI, settings, "r2", "raise") as mesh:
        assert mesh.restore()[CHECKPOINT_KEY]["kind"] == "input"
        result = await KillSwitch(mesh).run(make_agent(CountingModel(STEPS), log), "unused")
    assert result.final_output == f"did {STEPS} steps"
    assert log.ends() == list(range(STEPS))


class _KillAfterTool(RunHooks[Any]):
    """The user's own hooks, chained by the switch: the kill lands after step 1, before the model call."""

    def __init__(self, conn: Connection, mesh: AsyncAgent) -> None:
        self.conn, self.mesh, self.record = conn, mesh, None

    async def on_tool_end(self, context: Any, agent: Any, tool: Any, result: object) -> None:
        if result == "step 1 done":
            _, _, self.record = await put_kill(self.conn, URI)
            await await_until(lambda: self.mesh.killed)


async def test_raise_before_a_model_call_saves_the_conversation_and_a_new_run_continues(
    conn: Connection, settings: Settings
) -> None:
    model, log = CountingModel(STEPS), ToolLog()
    async with guarded_agent(URI, settings, "r3", "raise") as mesh:
        hooks = _KillAfterTool(conn, mesh)
        with pytest.raises(AgentKilled):
            await KillSwitch(mesh).run(make_agent(model, log), "go", hooks=hooks)
        assert hooks.record is not None
        ack = await wait_ack(conn, hooks.record.command_id)
        assert model.calls == 2  # the third model call never happened
        assert ack.data["metadata"]["at"] == "model call of worker" and ack.data["metadata"]["turn"] == 3
        saved = ack.data["checkpoint"][CHECKPOINT_KEY]
        assert saved["kind"] == "input"
        assert sum(1 for i in saved["input"] if i.get("type") == "function_call_output") == 2
        await delete_kill(conn, conn.ns.control_key(_target()))
        assert await mesh.wait_resumed(30)
        # Killed, then resumed in the same process: the next run continues the saved conversation.
        again = CountingModel(STEPS)
        result = await KillSwitch(mesh).run(make_agent(again, log), "unused")
    assert result.final_output == f"did {STEPS} steps"
    assert log.ends() == list(range(STEPS)) and again.calls == 3


async def test_raise_at_a_tool_start_after_its_approval_ends_the_run_and_the_model_asks_again(
    conn: Connection, settings: Settings
) -> None:
    model, log = CountingModel(STEPS), ToolLog()
    async with guarded_agent(URI, settings, "r4", "raise") as mesh:
        kills: list[Any] = []

        @tool_input_guardrail
        async def kill_at_two(data: Any) -> ToolGuardrailFunctionOutput:
            # Runs after the approval check, before on_tool_start: the kill lands in between.
            if '"n":2' in data.context.tool_arguments and not kills:
                kills.append(await put_kill(conn, URI))
                await await_until(lambda: mesh.killed)
            return ToolGuardrailFunctionOutput.allow()

        with pytest.raises(AgentKilled):
            await KillSwitch(mesh).run(make_agent(model, log, [kill_at_two]), "go")
        ack = await wait_ack(conn, kills[0][2].command_id)
        assert ack.data["metadata"]["at"] == "tool work" and log.starts() == [0, 1]
        saved = ack.data["checkpoint"][CHECKPOINT_KEY]
        assert saved["kind"] == "input"
        assert not any(
            i.get("call_id") == "call-2" for i in saved["input"]
        )  # the unanswered call is left out
        await delete_kill(conn, kills[0][0])
        assert await mesh.wait_resumed(30)
        again = CountingModel(STEPS)
        result = await KillSwitch(mesh).run(make_agent(again, log), "unused")
    assert result.final_output == f"did {STEPS} steps" and log.ends() == list(range(STEPS))
    assert again.calls == STEPS - 1  # asked for work(2) again, then 3, then answered


def _target() -> Any:
    from mesh.protocol.target import parse_target

    return parse_target(URI, None)


async def test_a_run_that_is_not_killed_returns_the_frameworks_result(
    settings: Settings, conn: Connection
) -> None:
    model, log = CountingModel(STEPS), ToolLog()
    async with guarded_agent(URI, settings, "ok", "raise") as mesh:
        await mesh.checkpoint({"mine": {"campaign": 7}})  # the program's own checkpoint
        result = await KillSwitch(mesh).run(make_agent(model, log), "go")
        assert result.final_output == f"did {STEPS} steps" and log.ends() == list(range(STEPS))
    async with guarded_agent(URI, settings, "ok", "raise") as mesh:
        saved = mesh.restore()
        assert saved[CHECKPOINT_KEY]["kind"] == "done"  # a restart does not replay a finished run
        assert saved["mine"] == {"campaign": 7}  # and the program's own entry is kept

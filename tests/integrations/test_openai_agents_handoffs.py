"""OpenAI Agents SDK handoffs under the kill switch: the agent handed off to has guarded tool calls too."""

from __future__ import annotations

import asyncio
from typing import Any, get_args

import pytest

from agent_sdk import AgentKilled
from agent_sdk.integrations.openai_agents import CHECKPOINT_KEY, KillSwitch
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection
from tests.integration.sdk_helpers import delete_kill
from tests.integrations.helpers import ToolLog, guarded_agent, kill_mid_tool, kill_while_thinking, wait_ack
from tests.integrations.oa_fakes import CountingModel, HandingModel, HandoffKind, make_agent, make_triage

URI = "agent://acme/prod/triage"
STEPS = 4
KINDS = get_args(HandoffKind)


@pytest.mark.parametrize("kind", KINDS)
async def test_pause_cancels_the_tool_of_the_agent_handed_off_to_and_resume_runs_each_once(
    conn: Connection, settings: Settings, kind: HandoffKind
) -> None:
    triage_model, model, log = HandingModel(), CountingModel(STEPS), ToolLog()
    log.block.add(1)
    triage = make_triage(triage_model, make_agent(model, log), kind)
    async with guarded_agent(URI, settings, f"h-{kind}", "pause") as mesh:
        run = asyncio.create_task(KillSwitch(mesh).run(triage, "go"))
        key, record = await kill_mid_tool(conn, log, URI, grace=600.0)
        ack = await wait_ack(conn, record.command_id)
        assert ("cancelled", 1) in [(k, n) for k, n, _ in log.events]  # the worker's call, cancelled
        assert ack.data["status"] == "paused"
        assert ack.data["metadata"]["at"] == "tool work" and ack.data["metadata"]["tool_calls"] == 1
        assert log.started_after(ack.time) == [] and not run.done()
        await delete_kill(conn, key)
        result = await asyncio.wait_for(run, 30)
    assert result.final_output == f"did {STEPS} steps" and result.last_agent.name == "worker"
    assert log.ends() == list(range(STEPS))  # every step completed exactly once
    assert log.starts() == [0, 1, 1, 2, 3]  # the cancelled call ran again, from its start
    assert triage_model.calls == 1


@pytest.mark.parametrize("kind", ["agent", "handoff"])
async def test_raise_in_the_agent_handed_off_to_saves_a_run_state_that_a_restart_continues_there(
    conn: Connection, settings: Settings, kind: HandoffKind
) -> None:
    model, log = CountingModel(STEPS, hold_at={3}), ToolLog()
    async with guarded_agent(URI, settings, f"hr-{kind}", "raise") as mesh:
        run = asyncio.create_task(
            KillSwitch(mesh).run(make_triage(HandingModel(), make_agent(model, log), kind), "go")
        )
        key, record = await kill_while_thinking(conn, mesh, model, URI)
        with pytest.raises(AgentKilled):
            await asyncio.wait_for(run, 30)
        ack = await wait_ack(conn, record.command_id)
        saved = ack.data["checkpoint"][CHECKPOINT_KEY]
        assert saved["kind"] == "run_state" and saved["kill_calls"] == ["call-2"]
        assert log.ends() == [0, 1] and log.started_after(ack.time) == []
    await delete_kill(conn, key)

    # A restarted process: the RunState finds the worker's guarded copy through the handoff graph.
    fresh_triage, fresh = HandingModel(), CountingModel(STEPS)
    log.block.add(3)  # and the worker's tool is still a guarded call: a pause cancels it
    async with guarded_agent(URI, settings, f"hr-{kind}", "pause") as mesh:
        run = asyncio.create_task(
            KillSwitch(mesh).run(make_triage(fresh_triage, make_agent(fresh, log), kind), "x")
        )
        key, record = await kill_mid_tool(conn, log, URI, grace=600.0)
        ack = await wait_ack(conn, record.command_id)
        assert ("cancelled", 3) in [(k, n) for k, n, _ in log.events]
        await delete_kill(conn, key)
        result = await asyncio.wait_for(run, 30)
    assert result.final_output == f"did {STEPS} steps" and log.ends() == list(range(STEPS))
    assert fresh_triage.calls == 0  # continued in the worker, not from the start


def test_every_agent_reachable_through_handoffs_is_copied_once_with_its_tools_guarded(
    settings: Settings,
) -> None:
    log = ToolLog()
    for kind in KINDS:
        worker = make_agent(CountingModel(STEPS), log)
        triage = make_triage(HandingModel(), worker, kind)
        switch = KillSwitch(guarded_agent(URI, settings, "graph", "pause"))
        guarded = switch.guard_agent(triage)
        assert switch.guard_agent(triage) is guarded and switch.guard_agent(guarded) is guarded
        assert triage.handoffs[0] is not guarded.handoffs[0]  # the original is left as it was
        target: Any = guarded.handoffs[0]
        copy: Any
        if kind == "agent":
            copy = target
        else:
            ref = target._agent_ref
            copy = ref() if ref is not None else switch.guard_agent(worker)
        assert copy is switch.guard_agent(worker) and copy is not worker
        assert copy.tools[0].on_invoke_tool is not worker.tools[0].on_invoke_tool  # type: ignore[union-attr]
        assert (
            len(copy.handoffs) == 1 and copy.handoffs[0] is guarded
        )  # the cycle back to triage ends at its one copy

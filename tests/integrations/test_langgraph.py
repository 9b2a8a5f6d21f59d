"""LangGraph and LangChain under the kill switch: kills as persisted interrupts, Command(resume), cancels."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from agent_sdk import AgentKilled
from agent_sdk.integrations.langgraph import CHECKPOINT_KEY, KILL_INTERRUPT, KillSwitch
from mesh.errors import ConfigError
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection
from tests.integration.sdk_helpers import await_until, delete_kill, put_kill
from tests.integrations.helpers import ToolLog, guarded_agent, kill_mid_tool, kill_while_thinking, wait_ack
from tests.integrations.lg_fakes import make_graph, make_model, make_tool

URI = "agent://acme/prod/graph"
STEPS = 4
GO = {"messages": [HumanMessage("go")]}


def _thread(name: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": name}}


def _answer(out: dict[str, Any]) -> str:
    return str(out["messages"][-1].content)


async def test_pause_interrupts_before_the_next_node_and_resume_continues_the_thread(
    conn: Connection, settings: Settings
) -> None:
    model, log = make_model(STEPS, hold_at={3}), ToolLog()
    graph = make_graph(model, [make_tool(log)])
    async with guarded_agent(URI, settings, "p1", "pause") as mesh:
        run = asyncio.create_task(KillSwitch(mesh).ainvoke(graph, GO, _thread("p1")))
        # Killed while the third model call "thinks"; it then asks for work(2): the "tools" node is
        # interrupted before it starts.
        key, record = await kill_while_thinking(conn, mesh, model, URI)
        ack = await wait_ack(conn, record.command_id)
        assert ack.data["status"] == "paused"
        assert ack.data["metadata"]["at"] == "node tools"
        assert ack.data["metadata"]["tool_calls"] == 2 and ack.data["metadata"]["last_tool"] == "work"
        assert ack.data["checkpoint"][CHECKPOINT_KEY] == {
            "thread_id": "p1", "kind": "interrupted", "progress": ack.data["metadata"],
        }  # fmt: skip
        state = await graph.aget_state(_thread("p1"))
        assert state.next == ("tools",) and state.interrupts[0].value[KILL_INTERRUPT]  # persisted
        assert not run.done() and log.ends() == [0, 1]
        await delete_kill(conn, key)
        out = await asyncio.wait_for(run, 30)
    assert _answer(out) == f"did {STEPS} steps"
    assert log.ends() == list(range(STEPS)) and log.starts() == list(range(STEPS))
    assert log.started_after(ack.time) == [2, 3]
    assert model.calls == STEPS + 1  # no model call was repeated


async def test_raise_leaves_the_interrupt_on_the_thread_and_the_next_run_resumes_it(
    conn: Connection, settings: Settings
) -> None:
    model, log = make_model(STEPS, hold_at={3}), ToolLog()
    graph = make_graph(model, [make_tool(log)])
    async with guarded_agent(URI, settings, "r1", "raise") as mesh:
        switch = KillSwitch(mesh)
        run = asyncio.create_task(switch.ainvoke(graph, GO, _thread("r1")))
        key, record = await kill_while_thinking(conn, mesh, model, URI)
        with pytest.raises(AgentKilled):
            await asyncio.wait_for(run, 30)
        ack = await wait_ack(conn, record.command_id)
        assert ack.data["status"] == "killed" and log.started_after(ack.time) == []
        assert (await graph.aget_state(_thread("r1"))).next == ("tools",)
        await delete_kill(conn, key)
        assert await mesh.wait_resumed(30)
        out = await switch.ainvoke(graph, {"messages": [HumanMessage("not used")]}, _thread("r1"))
    assert _answer(out) == f"did {STEPS} steps" and log.ends() == list(range(STEPS))


async def test_a_new_agent_and_graph_over_the_same_checkpoint_database_continue_a_killed_thread(
    conn: Connection, settings: Settings, tmp_path: Path
) -> None:
    db = str(tmp_path / "threads.db")
    model, log = make_model(STEPS, hold_at={3}), ToolLog()
    async with (
        AsyncSqliteSaver.from_conn_string(db) as saver,
        guarded_agent(URI, settings, "r3", "raise") as mesh,
    ):
        graph = make_graph(model, [make_tool(log)], saver)
        run = asyncio.create_task(KillSwitch(mesh).ainvoke(graph, GO, _thread("r3")))
        key, record = await kill_while_thinking(conn, mesh, model, URI)
        with pytest.raises(AgentKilled):
            await asyncio.wait_for(run, 30)
        ack = await wait_ack(conn, record.command_id)
        assert log.started_after(ack.time) == []
    await delete_kill(conn, key)
    # As a restarted process would: another agent, another graph and saver, only the file shared.
    fresh = make_model(STEPS)
    async with (
        AsyncSqliteSaver.from_conn_string(db) as saver,
        guarded_agent(URI, settings, "r3", "raise") as mesh,
    ):
        graph = make_graph(fresh, [make_tool(log)], saver)
        out = await KillSwitch(mesh).ainvoke(graph, {"messages": [HumanMessage("not used")]}, _thread("r3"))
    assert _answer(out) == f"did {STEPS} steps"
    assert log.ends() == list(range(STEPS)) and log.starts() == list(range(STEPS))
    assert fresh.calls == 2  # the interrupted "tools" node ran work(2); the model asked for 3, then answered


async def test_pause_cancels_a_guarded_tool_mid_call_and_runs_it_again_after_resume(
    conn: Connection, settings: Settings
) -> None:
    model, log = make_model(STEPS), ToolLog()
    log.block.add(1)
    async with guarded_agent(URI, settings, "p2", "pause") as mesh:
        switch = KillSwitch(mesh)
        graph = make_graph(model, switch.guard_tools([make_tool(log)]))
        run = asyncio.create_task(switch.ainvoke(graph, GO, _thread("p2")))
        key, record = await kill_mid_tool(conn, log, URI, grace=600.0)
        ack = await wait_ack(conn, record.command_id)
        assert ack.data["status"] == "paused"
        assert ack.data["metadata"]["last_tool"] == "work" and ack.data["metadata"]["tool_calls"] == 1
        assert ("cancelled", 1) in [(k, n) for k, n, _ in log.events]
        assert log.started_after(ack.time) == []
        await delete_kill(conn, key)
        out = await asyncio.wait_for(run, 30)
    assert _answer(out) == f"did {STEPS} steps"
    assert log.ends() == list(range(STEPS)) and log.starts() == [0, 1, 1, 2, 3]


async def test_raise_mid_tool_fails_the_node_and_the_next_run_reruns_that_node(
    conn: Connection, settings: Settings
) -> None:
    model, log = make_model(STEPS), ToolLog()
    log.block.add(1)
    async with guarded_agent(URI, settings, "r2", "raise") as mesh:
        switch = KillSwitch(mesh)
        graph = make_graph(model, switch.guard_tools([make_tool(log)]))
        run = asyncio.create_task(switch.ainvoke(graph, GO, _thread("r2")))
        key, record = await kill_mid_tool(conn, log, URI)
        with pytest.raises(AgentKilled):
            await asyncio.wait_for(run, 30)
        ack = await wait_ack(conn, record.command_id)
        assert log.started_after(ack.time) == []
        assert (await graph.aget_state(_thread("r2"))).next == ("tools",)  # the failed node is next
        await delete_kill(conn, key)
        assert await mesh.wait_resumed(30)
        out = await switch.ainvoke(graph, {"messages": [HumanMessage("not used")]}, _thread("r2"))
    assert _answer(out) == f"did {STEPS} steps"
    assert log.ends() == list(range(STEPS)) and log.starts() == [0, 1, 1, 2, 3]


async def test_plain_langchain_model_calls_are_safe_points(conn: Connection, settings: Settings) -> None:
    model = make_model(STEPS)
    async with guarded_agent(URI, settings, "lc", "pause") as mesh:
        config = KillSwitch(mesh).config()
        assert (await model.ainvoke([HumanMessage("hi")], config=config)).tool_calls
        key, _, record = await put_kill(conn, URI)
        await await_until(lambda: mesh.killed)
        call = asyncio.create_task(model.ainvoke([HumanMessage("hi")], config=config))
        ack = await wait_ack(conn, record.command_id)
        assert ack.data["metadata"]["at"] == "model call" and model.calls == 1 and not call.done()
        await delete_kill(conn, key)
        await asyncio.wait_for(call, 30)
        assert model.calls == 2


async def test_a_graph_without_a_thread_gets_a_one_line_error(settings: Settings) -> None:
    async with guarded_agent(URI, settings, "bad", "raise") as mesh:
        with pytest.raises(ConfigError, match="thread_id"):
            await KillSwitch(mesh).ainvoke(make_graph(make_model(1), []), GO, {})

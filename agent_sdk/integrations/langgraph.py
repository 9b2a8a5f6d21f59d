"""LangGraph and LangChain: nodes, model calls and tool calls are safe points; a kill becomes an interrupt."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from agent_sdk.async_agent import AsyncAgent
from agent_sdk.integrations import require
from agent_sdk.integrations.progress import RunProgress
from agent_sdk.integrations.safepoints import any_killed, call_guarded, pass_safe_point, with_entry
from mesh.errors import AgentKilled, ConfigError

try:
    from langchain_core.callbacks import AsyncCallbackHandler
    from langchain_core.runnables import RunnableConfig
    from langchain_core.tools import BaseTool, StructuredTool
    from langgraph.errors import GraphInterrupt
    from langgraph.types import Command, Interrupt
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise require("langgraph", "langgraph", exc) from exc

__all__ = ["CHECKPOINT_KEY", "KILL_INTERRUPT", "RESUMED", "KillSwitch", "KillSwitchCallback"]

#: The key of this integration's entry in the instance checkpoint.
CHECKPOINT_KEY = "langgraph"
#: Marks the interrupts that a kill made (the ``value`` of the graph's Interrupt).
KILL_INTERRUPT = "agent_mesh.killed"
#: The value a resumed thread receives: ``Command(resume=RESUMED)``.
RESUMED = "agent_mesh.resumed"


class KillSwitchCallback(AsyncCallbackHandler):
    """The safe points, as a LangChain callback handler (also for plain LangChain agents).

    A node start with a kill in force raises LangGraph's own GraphInterrupt: the graph stops
    before the node, and its checkpointer persists the interrupt. A model or tool call start is
    a safe point of the AsyncAgent: ``pause`` holds it there, ``raise`` raises AgentKilled.
    """

    raise_error = True  # our exceptions must reach the graph, not be logged and dropped
    run_inline = True  # awaited in the run's own task, before the step it guards

    def __init__(self, mesh: AsyncAgent, progress: RunProgress) -> None:
        self.mesh = mesh
        self.progress = progress
        self._node: str | None = None  # the graph node that started last

    async def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        node = (metadata or {}).get("langgraph_node")
        if node is None or kwargs.get("name") != node:
            return  # not a graph node starting (a runnable inside one)
        progress = self.progress
        step = (metadata or {}).get("langgraph_step")
        if isinstance(step, int):
            progress.turn = step
        progress.at = f"node {node}"
        self._node = str(node)
        if self.mesh.killed:
            raise GraphInterrupt([Interrupt(value={KILL_INTERRUPT: True, "node": node})])

    async def on_chat_model_start(
        self, serialized: dict[str, Any] | None, messages: list[list[Any]], *, run_id: UUID, **kwargs: Any
    ) -> None:
        await self._model_call()

    async def on_llm_start(
        self, serialized: dict[str, Any] | None, prompts: list[str], *, run_id: UUID, **kwargs: Any
    ) -> None:
        await self._model_call()

    async def _model_call(self) -> None:
        self.progress.at = f"model call in node {self._node}" if self._node else "model call"
        await pass_safe_point(self.mesh, self.progress)

    async def on_tool_start(
        self, serialized: dict[str, Any] | None, input_str: str, *, run_id: UUID, **kwargs: Any
    ) -> None:
        name = kwargs.get("name") or (serialized or {}).get("name") or "tool"
        self.progress.last_tool = str(name)
        self.progress.at = f"tool {name}"
        await pass_safe_point(self.mesh, self.progress)

    async def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self.progress.tool_calls += 1


class KillSwitch:
    """Runs LangGraph graphs (and LangChain runnables) under one AsyncAgent's kill switch.

    ``await KillSwitch(mesh).ainvoke(graph, input, config)`` in place of ``graph.ainvoke(input,
    config)``. The graph needs a checkpointer and ``config["configurable"]["thread_id"]``.

    A kill seen at a node's start becomes an interrupt that the checkpointer persists, and the
    graph stops before that node. The instance acknowledges it; in ``pause`` mode it waits for
    ``mesh resume`` and continues the thread with ``Command(resume=RESUMED)``, and the
    interrupted node runs from its start (none of it had run). In ``raise`` mode it raises
    AgentKilled; the next ``ainvoke`` of the thread resumes it the same way. A kill seen at a
    model or tool call inside a node holds that call (``pause``), or fails the node with
    AgentKilled (``raise``); the next ``ainvoke`` of the thread re-runs that node from its start
    (LangGraph keeps what the other nodes of the step wrote). Tools made with
    :meth:`guard_tools` are also cancelled mid-call.
    """

    def __init__(self, mesh: AsyncAgent) -> None:
        self.mesh = mesh
        self.progress = RunProgress()
        self.callback = KillSwitchCallback(mesh, self.progress)

    def config(self, config: RunnableConfig | None = None) -> RunnableConfig:
        """``config`` with the kill switch's callback added (for plain LangChain runnables too)."""
        merged: dict[str, Any] = dict(config or {})
        callbacks = merged.get("callbacks")
        if callbacks is None:
            merged["callbacks"] = [self.callback]
        elif isinstance(callbacks, list):
            if self.callback not in callbacks:
                merged["callbacks"] = [*callbacks, self.callback]
        else:  # a callback manager
            manager = callbacks.copy()
            manager.add_handler(self.callback, inherit=True)
            merged["callbacks"] = manager
        return merged  # type: ignore[return-value]

    def guard_tools(self, tools: Sequence[BaseTool]) -> list[BaseTool]:
        """Copies of ``tools`` whose async calls are guarded: cancelled when a kill lands mid-call
        (``pause``: made again after resume; ``raise``: AgentKilled fails the node)."""
        out: list[BaseTool] = []
        for tool in tools:
            if not isinstance(tool, StructuredTool) or tool.coroutine is None:
                raise ConfigError(
                    f"guard_tools needs async tools (StructuredTool with a coroutine): {tool.name!r} has none"
                )
            out.append(tool.model_copy(update={"coroutine": self._guarded(tool.coroutine)}))
        return out

    def _guarded(self, coroutine: Any) -> Any:
        mesh = self.mesh

        async def guarded(*args: Any, **kwargs: Any) -> Any:
            return await call_guarded(mesh, coroutine, *args, **kwargs)

        return guarded

    async def ainvoke(self, graph: Any, input: Any, config: RunnableConfig, **kwargs: Any) -> Any:
        """``graph.ainvoke(input, config)`` under the kill switch; continues a thread a kill stopped.

        When the thread is stopped at a kill's interrupt, or at a node that a kill failed, it
        continues from there and ``input`` is not used.
        """
        thread = (config.get("configurable") or {}).get("thread_id")
        if thread is None:
            raise ConfigError(
                "a kill is resumable only on a thread: pass config={'configurable': {'thread_id': ...}} "
                "and compile the graph with a checkpointer"
            )
        config = self.config(config)
        start: Any = input
        if await self._kill_interrupt(graph, config) is not None:
            start = Command(resume=RESUMED)
        elif await self._failed_by_kill(graph, config, str(thread)):
            start = None  # LangGraph's own way to retry the node that failed
        while True:
            try:
                out = await graph.ainvoke(start, config, **kwargs)
            except Exception as exc:
                killed = any_killed(exc)
                if killed is None:
                    raise
                await self._save(str(thread), "failed")
                raise killed from None
            node = await self._kill_interrupt(graph, config)
            if node is None:
                await self._save(str(thread), "done")
                return out
            self.progress.at = f"node {node}"
            await self._save(str(thread), "interrupted")  # pauses until resume, or raises AgentKilled
            start = Command(resume=RESUMED)

    async def _kill_interrupt(self, graph: Any, config: RunnableConfig) -> str | None:
        """The node the thread is stopped before by a kill's interrupt, or None."""
        state = await graph.aget_state(config)
        for interrupt in getattr(state, "interrupts", ()) or ():
            value = getattr(interrupt, "value", None)
            if isinstance(value, dict) and value.get(KILL_INTERRUPT):
                return str(value.get("node"))
        return None

    async def _failed_by_kill(self, graph: Any, config: RunnableConfig, thread: str) -> bool:
        saved = self.mesh._core.ckpt.state
        entry = saved.get(CHECKPOINT_KEY) if isinstance(saved, dict) else None
        if not isinstance(entry, dict) or entry.get("thread_id") != thread or entry.get("kind") != "failed":
            return False
        self.progress.restore(entry.get("progress"))
        state = await graph.aget_state(config)
        return bool(getattr(state, "next", ()))

    async def _save(self, thread: str, kind: str) -> None:
        """Record where the thread stopped as the instance checkpoint, at a safe point.

        It is a safe point: after an interrupt, the one that acknowledges the kill (it pauses until
        resume, or raises AgentKilled); after a finished run, a kill that came at the very end
        acts here too. After a failed node the kill was acknowledged already.
        """
        self.mesh._core.metadata = self.progress.data
        entry = {"thread_id": thread, "kind": kind, "progress": self.progress.metadata()}
        try:
            await self.mesh.checkpoint(with_entry(self.mesh, CHECKPOINT_KEY, entry))
        except AgentKilled:
            if kind != "failed":  # after a failed node the caller raises the kill it caught
                raise

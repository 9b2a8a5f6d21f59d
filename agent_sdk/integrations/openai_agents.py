"""OpenAI Agents SDK: every model call and tool call of a run is a safe point; a kill saves the RunState."""

from __future__ import annotations

import dataclasses
import inspect
import weakref
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any, cast

from agent_sdk.async_agent import AsyncAgent
from agent_sdk.integrations import require
from agent_sdk.integrations.progress import RunProgress
from agent_sdk.integrations.safepoints import any_killed, call_guarded, mode, pass_safe_point, with_entry
from mesh.errors import AgentKilled

try:
    from agents import (
        Agent,
        AgentsException,
        FunctionTool,
        Handoff,
        RunHooks,
        Runner,
        RunResult,
        RunResultStreaming,
        RunState,
    )
    from agents.items import ItemHelpers, ModelResponse, TResponseInputItem
    from agents.run_context import RunContextWrapper
    from agents.stream_events import StreamEvent
    from agents.tool import Tool
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise require("openai_agents", "openai-agents", exc) from exc

__all__ = ["CHECKPOINT_KEY", "KillSwitch", "StreamedRun"]

#: The key of this integration's entry in the instance checkpoint.
CHECKPOINT_KEY = "openai_agents"


class _Stopped(AgentsException):
    """Ends a run from a hook; an AgentsException, so the SDK attaches the run's data (run_data)."""


class _Hooks(RunHooks[Any]):
    """The safe points: before every model call and every tool call; counts where the run is."""

    def __init__(self, switch: KillSwitch, user: RunHooks[Any] | None) -> None:
        self.switch = switch
        self.user = user

    async def on_llm_start(
        self,
        context: RunContextWrapper[Any],
        agent: Agent[Any],
        system_prompt: str | None,
        input_items: list[TResponseInputItem],
    ) -> None:
        progress = self.switch.progress
        progress.turn += 1
        progress.at = f"model call of {agent.name}"
        await self.switch.safe_point()
        if self.user is not None:
            await self.user.on_llm_start(context, agent, system_prompt, input_items)

    async def on_llm_end(
        self, context: RunContextWrapper[Any], agent: Agent[Any], response: ModelResponse
    ) -> None:
        if self.user is not None:
            await self.user.on_llm_end(context, agent, response)

    async def on_agent_start(self, context: Any, agent: Agent[Any]) -> None:
        if self.user is not None:
            await self.user.on_agent_start(context, agent)

    async def on_agent_end(self, context: Any, agent: Agent[Any], output: Any) -> None:
        if self.user is not None:
            await self.user.on_agent_end(context, agent, output)

    async def on_handoff(
        self, context: RunContextWrapper[Any], from_agent: Agent[Any], to_agent: Agent[Any]
    ) -> None:
        if self.user is not None:
            await self.user.on_handoff(context, from_agent, to_agent)

    async def on_tool_start(self, context: RunContextWrapper[Any], agent: Agent[Any], tool: Tool) -> None:
        progress = self.switch.progress
        progress.last_tool = tool.name
        progress.at = f"tool {tool.name}"
        await self.switch.safe_point()
        if self.user is not None:
            await self.user.on_tool_start(context, agent, tool)

    async def on_tool_end(
        self, context: RunContextWrapper[Any], agent: Agent[Any], tool: Tool, result: object
    ) -> None:
        self.switch.progress.tool_calls += 1
        if self.user is not None:
            await self.user.on_tool_end(context, agent, tool, result)


class KillSwitch:
    """Runs OpenAI Agents SDK agents under one AsyncAgent's kill switch.

    ``result = await KillSwitch(mesh).run(agent, "input")`` in place of ``Runner.run(agent, "input")``,
    and ``stream = await KillSwitch(mesh).run_streamed(agent, "input")`` in place of
    ``Runner.run_streamed(agent, "input")``. Every model call and every tool call is a safe point;
    a function tool call running when a kill lands is cancelled, in the given agent and in every
    agent its handoffs reach. ``pause`` holds the run there and, after ``mesh resume``, goes on (a
    cancelled tool call runs again). ``raise`` ends the run with AgentKilled, after saving where it
    was as the instance's checkpoint; the next ``run`` of this instance (a restarted process too)
    continues from it. A kill at a tool call saves the SDK's own ``RunState``: the killed calls are
    its pending approvals, which the next run approves. A kill before a model call, or in the
    middle of a tool call, saves the conversation so far as an input list (the SDK makes a RunState
    only from a run that returned, and such a run raised): the next run starts from it, and the
    model call (or the tool call, which the model asks for again) is made then.
    """

    def __init__(self, mesh: AsyncAgent) -> None:
        self.mesh = mesh
        self.progress = RunProgress()
        self._killed = mesh._core.killed_evt
        self._kill_calls: set[str] = set()
        # id(original) -> (original, copy); both held, so an id is not reused while it is a key.
        self._agents: dict[int, tuple[Agent[Any], Agent[Any]]] = {}
        self._copies: dict[int, Agent[Any]] = {}

    async def safe_point(self) -> None:
        if self._killed.is_set() and mode(self.mesh) == "raise":
            # End the run first and acknowledge after its state is saved: see run().
            raise _Stopped("killed")
        await pass_safe_point(self.mesh, self.progress)

    # -- tools ----------------------------------------------------------------------------------------
    def guard_agent(self, agent: Agent[Any]) -> Agent[Any]:
        """A copy of ``agent`` whose function tools are guarded calls, as are those of every agent
        its handoffs reach (each agent copied once, the same copy on every call; cycles are fine).

        A handoff whose target is an ``Agent`` (or a ``handoff()`` of one) points to that agent's
        copy; every ``Handoff`` also guards the agent its ``on_invoke_handoff`` returns, so a
        target known only when the handoff is invoked is guarded then.
        """
        if self._copies.get(id(agent)) is agent:
            return agent  # already a copy of ours (e.g. returned by a guarded handoff)
        known = self._agents.get(id(agent))
        if known is not None and known[0] is agent:
            return known[1]
        tools = [self._guard_tool(t) if isinstance(t, FunctionTool) else t for t in agent.tools]
        guarded = agent.clone(tools=tools)
        self._agents[id(agent)] = (agent, guarded)
        self._copies[id(guarded)] = guarded
        # Registered before its handoffs are: a cycle back to this agent finds the copy.
        guarded.handoffs = [self._guard_handoff(h) for h in agent.handoffs]
        return guarded

    def _guard_handoff(self, handoff: Any) -> Any:
        if isinstance(handoff, Agent):
            return self.guard_agent(handoff)
        if not isinstance(handoff, Handoff):
            return handoff  # not a kind the SDK hands off through: left as it is
        invoke = handoff.on_invoke_handoff

        async def on_invoke_handoff(context: RunContextWrapper[Any], arguments: str) -> Any:
            # The SDK runs the agent this returns: the target's copy, whatever the handoff decides.
            target = await invoke(context, arguments)
            return self.guard_agent(target) if isinstance(target, Agent) else target

        guarded: Handoff[Any, Any] = dataclasses.replace(handoff, on_invoke_handoff=on_invoke_handoff)
        # _agent_ref (init=False, so not copied by replace) is how the SDK's RunState finds the
        # target; it must name the copy, which this switch keeps alive.
        ref = handoff._agent_ref
        target = ref() if ref is not None else None
        if isinstance(target, Agent):
            guarded._agent_ref = weakref.ref(self.guard_agent(target))
        return guarded

    def _guard_tool(self, tool: FunctionTool) -> FunctionTool:
        invoke = tool.on_invoke_tool
        mesh = self.mesh

        async def on_invoke_tool(context: Any, arguments: str) -> Any:
            return await call_guarded(mesh, invoke, context, arguments)

        return dataclasses.replace(
            tool, on_invoke_tool=on_invoke_tool, needs_approval=self._needs_approval(tool.needs_approval)
        )

    def _needs_approval(self, own: Any) -> Any:
        """The tool's own approval rule, or a kill in raise mode: the run returns with it pending."""
        mesh = self.mesh
        killed = self._killed
        kill_calls = self._kill_calls

        async def needs_approval(context: Any, params: dict[str, Any], call_id: str) -> bool:
            if killed.is_set() and mode(mesh) == "raise":
                kill_calls.add(call_id)
                return True
            if callable(own):
                answer = own(context, params, call_id)
                return bool(await answer) if inspect.isawaitable(answer) else bool(answer)
            return bool(own)

        return needs_approval

    # -- the run --------------------------------------------------------------------------------------
    async def run(self, agent: Agent[Any], input: str | list[Any], **kwargs: Any) -> RunResult:
        """``Runner.run(agent, input, **kwargs)`` under the kill switch; continues a checkpointed run.

        ``input`` starts a fresh run; when this instance's checkpoint holds a run that a kill
        ended (saved by this process, or restored at start by a restarted one), that run
        continues instead and ``input`` is not used.
        """
        guarded, start = await self._start(agent, input)
        hooks = _Hooks(self, kwargs.pop("hooks", None))
        try:
            result = await Runner.run(guarded, start, hooks=hooks, **kwargs)
        except Exception as exc:
            killed = await self._stopped_by(exc)
            if killed is None:
                raise
            raise killed from None
        await self._returned(result)
        return result

    async def run_streamed(self, agent: Agent[Any], input: str | list[Any], **kwargs: Any) -> StreamedRun:
        """``Runner.run_streamed(agent, input, **kwargs)`` under the kill switch, as :meth:`run`.

        Awaited (a checkpointed run is read first), it returns the SDK's streamed result wrapped:
        its ``stream_events()`` holds while the run is paused and ends with AgentKilled when a
        kill ends the run.
        """
        guarded, start = await self._start(agent, input)
        hooks = _Hooks(self, kwargs.pop("hooks", None))
        return StreamedRun(self, Runner.run_streamed(guarded, start, hooks=hooks, **kwargs))

    async def _start(self, agent: Agent[Any], input: str | list[Any]) -> tuple[Agent[Any], Any]:
        """The guarded agent and where its run starts: ``input``, or the checkpointed run."""
        guarded = self.guard_agent(agent)
        restored = await self._restored(guarded)
        return guarded, input if restored is None else restored

    async def _stopped_by(self, exc: Exception) -> AgentKilled | None:
        """The AgentKilled that ended the run with ``exc`` (its conversation saved first), or None."""
        killed = any_killed(exc)
        if killed is None and not any(isinstance(e, _Stopped) for e in _chain(exc)):
            return None  # not a kill (_Stopped is ours, if the SDK wrapped it or not)
        conversation = _input_list(exc)
        if conversation is not None:
            await self._save({"kind": "input", "input": conversation})
        return killed or self._killed_error()

    async def _returned(self, result: RunResult | RunResultStreaming) -> None:
        """A run that returned: killed at a tool call (its RunState saved, AgentKilled), or done."""
        pending = [i.call_id for i in result.interruptions if i.call_id in self._kill_calls]
        if pending:
            state = result.to_state()
            await self._save({"kind": "run_state", "state": state.to_string(), "kill_calls": pending})
            raise self._killed_error()
        done = {"kind": "done", "progress": self.progress.metadata()}
        await self.mesh.checkpoint(with_entry(self.mesh, CHECKPOINT_KEY, done))

    async def _save(self, entry: dict[str, Any]) -> None:
        """Save the run as the checkpoint, then pass the safe point that acknowledges the kill."""
        entry["progress"] = self.progress.metadata()
        self.mesh._core.metadata = self.progress.data
        try:
            await self.mesh.checkpoint(with_entry(self.mesh, CHECKPOINT_KEY, entry))  # acks, then raises
        except AgentKilled:
            return

    def _killed_error(self) -> AgentKilled:
        return self.mesh._core.killed_error()

    async def _restored(self, agent: Agent[Any]) -> str | list[Any] | RunState[Any] | None:
        saved = self.mesh._core.ckpt.state  # the latest: restored at start, or saved since
        entry = saved.get(CHECKPOINT_KEY) if isinstance(saved, dict) else None
        if not isinstance(entry, dict):
            return None
        self.progress.restore(entry.get("progress"))
        if entry.get("kind") == "input" and isinstance(entry.get("input"), list):
            return list(entry["input"])
        if entry.get("kind") == "run_state" and isinstance(entry.get("state"), str):
            state: RunState[Any] = await RunState.from_string(agent, entry["state"])
            killed = set(entry.get("kill_calls") or [])
            for item in state.get_interruptions():
                if item.call_id in killed:
                    state.approve(item)
            return state
        return None


class StreamedRun:
    """``Runner.run_streamed``'s result under the kill switch (every attribute but one is the SDK's own).

    ``stream_events()`` yields the SDK's events; a paused run holds it; a run that a kill ends,
    ends it with AgentKilled, after its state is saved as the instance's checkpoint.
    """

    def __init__(self, switch: KillSwitch, result: RunResultStreaming) -> None:
        self.switch = switch
        #: The SDK's own streamed result.
        self.result = result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.result, name)

    async def stream_events(self) -> AsyncIterator[StreamEvent]:
        try:
            # An async generator (typed as an iterator): closed with ours when the caller stops early.
            inner = cast(AsyncGenerator[StreamEvent, None], self.result.stream_events())
            async with aclosing(inner) as events:
                async for event in events:
                    yield event
        except Exception as exc:
            killed = await self.switch._stopped_by(exc)
            if killed is None:
                raise
            raise killed from None
        await self.switch._returned(self.result)


def _input_list(exc: BaseException) -> list[Any] | None:
    """The conversation a failed run had got to, as the input of a new run (calls left unanswered dropped)."""
    data = getattr(exc, "run_data", None)
    if data is None:
        for inner in _chain(exc):
            data = getattr(inner, "run_data", None)
            if data is not None:
                break
    if data is None:
        return None
    items: list[Any] = ItemHelpers.input_to_new_input_list(data.input) + [
        i.to_input_item() for i in data.new_items
    ]
    answered = {
        i.get("call_id") for i in items if isinstance(i, dict) and i.get("type") == "function_call_output"
    }
    return [
        i
        for i in items
        if not (isinstance(i, dict) and i.get("type") == "function_call" and i.get("call_id") not in answered)
    ]


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in out:
        out.append(current)
        current = current.__cause__ or current.__context__
    return out

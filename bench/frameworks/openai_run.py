"""The OpenAI Agents SDK integration, bare and switched: a stand-in model and S tool calls."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from bench.frameworks.timing import Part, added_work, end_to_end_row, interleaved
from bench.support.machine import package_version

__all__ = ["measure_openai_agents"]


async def measure_openai_agents(mesh: Any, runs: int, steps: int, n: int) -> dict[str, Any]:
    from agents import Agent, RunContextWrapper, RunHooks, Runner, function_tool, set_tracing_disabled
    from agents.items import ModelResponse
    from agents.models.interface import Model
    from agents.testing import assistant_message, function_call
    from agents.usage import Usage

    from agent_sdk.integrations.openai_agents import KillSwitch, _Hooks
    from agent_sdk.integrations.safepoints import call_guarded

    class StepsModel(Model):
        async def get_response(self, system_instructions: Any, input: Any, *args: Any, **kwargs: Any) -> Any:
            done = sum(1 for i in input if isinstance(i, dict) and i.get("type") == "function_call_output")
            out = (
                [function_call("work", {"n": done}, call_id=f"c{done}")]
                if done < steps
                else [assistant_message("ok")]
            )
            return ModelResponse(output=out, usage=Usage(), response_id=None)

        def stream_response(self, *args: Any, **kwargs: Any) -> Any:
            raise NotImplementedError

    @function_tool
    async def work(n: int) -> str:
        """Step n."""
        return "done"

    set_tracing_disabled(True)  # no trace export: the same for the bare and the switched runs
    agent = Agent(name="bench", model=StepsModel(), tools=[work])
    switch = KillSwitch(mesh)
    calls = 2 * steps + 1  # steps tool calls, steps + 1 model calls
    bare, switched = await interleaved(
        lambda: Runner.run(agent, "go", max_turns=steps + 2),
        lambda: switch.run(agent, "go", max_turns=steps + 2),
        runs,
        calls,
    )
    versions = {"openai-agents": package_version("openai-agents")}
    end_to_end = end_to_end_row(
        "OpenAI Agents SDK (Runner.run)", "model or tool call", bare, switched, versions
    )

    ctx: Any = RunContextWrapper(context=None)
    plain_hooks: Any = RunHooks()
    hooks = _Hooks(switch, None)
    approval = switch.guard_agent(agent).tools[0].needs_approval  # type: ignore[union-attr]

    async def body() -> str:
        return "done"

    async def bare_tool() -> None:
        await plain_hooks.on_tool_start(ctx, agent, work)
        await body()
        await plain_hooks.on_tool_end(ctx, agent, work, "done")

    async def switched_tool() -> None:
        await approval(ctx, {"n": 1}, "c1")
        await hooks.on_tool_start(ctx, agent, work)
        await call_guarded(mesh, body)
        await hooks.on_tool_end(ctx, agent, work, "done")

    def bare_model() -> Awaitable[None]:
        return plain_hooks.on_llm_start(ctx, agent, None, [])  # type: ignore[no-any-return]

    def switched_model() -> Awaitable[None]:
        return hooks.on_llm_start(ctx, agent, None, [])

    parts: list[Part] = [
        ("model", "on_llm_start", bare_model, switched_model),
        ("tool", "approval, on_tool_start/end, guarded invoke", bare_tool, switched_tool),
    ]
    added = await added_work("OpenAI Agents SDK", parts, n)
    return {"end_to_end": end_to_end, "added": added, "versions": versions}

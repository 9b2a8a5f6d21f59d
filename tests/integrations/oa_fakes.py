"""A custom Agents SDK Model that works through N tool calls, one per turn, and tools that log their calls."""

from __future__ import annotations

import asyncio
from typing import Any

from agents import Agent, function_tool, set_tracing_disabled
from agents.items import ModelResponse
from agents.models.interface import Model
from agents.testing import assistant_message, function_call
from agents.usage import Usage

from tests.integrations.helpers import ToolLog

set_tracing_disabled(True)  # offline: no trace export to try


class CountingModel(Model):
    """Asks for ``work(n)`` for n = the tool outputs it has seen, until ``steps``; then answers.

    It decides from the input alone, so a run continued from a checkpoint (a RunState, or an
    input list) gets the same next step as the run that was killed. ``hold_at`` turns (1-based)
    wait for ``release`` before answering, so a test can kill while the model "thinks".
    """

    def __init__(self, steps: int, hold_at: set[int] | None = None) -> None:
        self.steps = steps
        self.hold_at = hold_at or set()
        self.calls = 0
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def get_response(
        self,
        system_instructions: str | None,
        input: str | list[Any],
        model_settings: Any,
        tools: list[Any],
        output_schema: Any,
        handoffs: list[Any],
        tracing: Any,
        *,
        previous_response_id: str | None = None,
        conversation_id: str | None = None,
        prompt: Any = None,
        **_: Any,
    ) -> ModelResponse:
        self.calls += 1
        if self.calls in self.hold_at:
            self.entered.set()
            await self.release.wait()
        items = input if isinstance(input, list) else []
        done = sum(1 for i in items if isinstance(i, dict) and i.get("type") == "function_call_output")
        if done < self.steps:
            out = [function_call("work", {"n": done}, call_id=f"call-{done}")]
        else:
            out = [assistant_message(f"did {done} steps")]
        return ModelResponse(output=out, usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("these tests do not stream")


def make_agent(model: CountingModel, log: ToolLog, guardrails: list[Any] | None = None) -> Agent[Any]:
    @function_tool(tool_input_guardrails=guardrails)
    async def work(n: int) -> str:
        """Do step n."""
        return await log.work(n)

    return Agent(name="worker", instructions="Do the steps.", model=model, tools=[work])

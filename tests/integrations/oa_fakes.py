"""A custom Agents SDK Model that works through N tool calls, one per turn (or streamed), and logged tools."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Literal

from agents import Agent, Handoff, function_tool, handoff, set_tracing_disabled
from agents.items import ModelResponse
from agents.models.interface import Model
from agents.strict_schema import ensure_strict_json_schema
from agents.testing import assistant_message, function_call
from agents.usage import Usage
from openai.types.responses import Response, ResponseCompletedEvent

from tests.integrations.helpers import ToolLog

set_tracing_disabled(True)  # offline: no trace export to try

#: How the first agent of a handoff test names the second: the agent itself, ``handoff(agent)``,
#: or a Handoff whose ``on_invoke_handoff`` returns it (the SDK learns the target only then).
HandoffKind = Literal["agent", "handoff", "invoked"]


class _FakeModel(Model):
    """Answers from the input alone, by ``answer``; ``hold_at`` calls (1-based) wait for ``release``.

    ``stream_response`` streams the same answer as the one event a run needs, ``response.completed``.
    """

    def __init__(self, hold_at: set[int] | None = None) -> None:
        self.hold_at = hold_at or set()
        self.calls = 0
        self.streamed = 0
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    def answer(self, items: list[Any]) -> list[Any]:
        raise NotImplementedError

    async def _output(self, input: str | list[Any]) -> list[Any]:
        self.calls += 1
        if self.calls in self.hold_at:
            self.entered.set()
            await self.release.wait()
        return self.answer(input if isinstance(input, list) else [])

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
        return ModelResponse(output=await self._output(input), usage=Usage(), response_id=None)

    async def stream_response(  # an async generator, as the SDK's own models
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
    ) -> AsyncIterator[Any]:
        self.streamed += 1
        output = await self._output(input)
        response = Response(
            id=f"fake-{self.calls}",
            created_at=0,
            model="fake",
            object="response",
            output=output,
            parallel_tool_calls=False,
            tool_choice="auto",
            tools=[],
        )
        yield ResponseCompletedEvent(type="response.completed", response=response, sequence_number=0)


class CountingModel(_FakeModel):
    """Asks for ``work(n)`` for n = the work outputs it has seen, until ``steps``; then answers.

    It decides from the input alone, so a run continued from a checkpoint (a RunState, or an
    input list) gets the same next step as the run that was killed. ``hold_at`` turns (1-based)
    wait for ``release`` before answering, so a test can kill while the model "thinks".
    """

    def __init__(self, steps: int, hold_at: set[int] | None = None) -> None:
        super().__init__(hold_at)
        self.steps = steps

    def answer(self, items: list[Any]) -> list[Any]:
        done = sum(
            1
            for i in items
            if isinstance(i, dict)
            and i.get("type") == "function_call_output"
            and str(i.get("call_id")).startswith("call-")
        )
        if done < self.steps:
            return [function_call("work", {"n": done}, call_id=f"call-{done}")]
        return [assistant_message(f"did {done} steps")]


class HandingModel(_FakeModel):
    """The first agent's model: hands the request off to the worker."""

    def answer(self, items: list[Any]) -> list[Any]:
        return [function_call("transfer_to_worker", {}, call_id="handoff-0")]


def make_agent(model: CountingModel, log: ToolLog, guardrails: list[Any] | None = None) -> Agent[Any]:
    @function_tool(tool_input_guardrails=guardrails)
    async def work(n: int) -> str:
        """Do step n."""
        return await log.work(n)

    return Agent(name="worker", instructions="Do the steps.", model=model, tools=[work])


def make_triage(model: HandingModel, worker: Agent[Any], kind: HandoffKind) -> Agent[Any]:
    """A first agent that hands off to ``worker``, which can hand back (a cycle in the handoff graph)."""
    target: Agent[Any] | Handoff[Any, Any]
    if kind == "agent":
        target = worker
    elif kind == "handoff":
        target = handoff(worker)
    else:

        async def invoke(context: Any, arguments: str) -> Agent[Any]:
            return worker

        target = Handoff(
            tool_name="transfer_to_worker",
            tool_description="Hand the steps to the worker.",
            input_json_schema=ensure_strict_json_schema({}),
            on_invoke_handoff=invoke,
            agent_name="worker",
        )
    triage = Agent(name="triage", instructions="Hand off.", model=model, handoffs=[target])
    worker.handoffs = [triage]
    return triage

"""OpenAI Agents SDK with a kill switch: model and tool calls are safe points; a kill saves the RunState."""

import asyncio
import os
from typing import Any

from agents import Agent, function_tool
from agents.items import ModelResponse
from agents.models.interface import Model
from agents.testing import assistant_message, function_call
from agents.usage import Usage

from agent_sdk import AgentKilled, AsyncAgent
from agent_sdk.integrations.openai_agents import KillSwitch

STEPS = int(os.environ.get("STEPS", "5"))


class StandInModel(Model):
    """Plays the LLM offline (use your real model instead): asks for send_email(n) until STEPS are sent."""

    async def get_response(self, system_instructions: Any, input: Any, *args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(float(os.environ.get("THINK", "0.2")))  # the model "thinks"
        items = input if isinstance(input, list) else []
        sent = sum(1 for i in items if isinstance(i, dict) and i.get("type") == "function_call_output")
        if sent < STEPS:
            output = [function_call("send_email", {"n": sent}, call_id=f"call-{sent}")]
        else:
            output = [assistant_message(f"sent {sent} emails")]
        return ModelResponse(output=output, usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError


@function_tool
async def send_email(n: int) -> str:
    """Send email number n."""
    print(f"sent email {n}", flush=True)
    return f"email {n} sent"


agent = Agent(name="mailer", instructions="Send the campaign.", model=StandInModel(), tools=[send_email])


async def main() -> None:
    async with AsyncAgent("agent://acme/prod/oai-mailer", instance="replica-1") as mesh:
        result = await KillSwitch(mesh).run(agent, "Send the campaign")  # was: Runner.run(agent, ...)
    print(result.final_output, flush=True)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except AgentKilled as stop:  # the run's state is the instance's checkpoint: run again to continue
        print(f"killed: {stop}", flush=True)
        raise SystemExit(3) from None

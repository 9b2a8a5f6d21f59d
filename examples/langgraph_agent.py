"""LangGraph with a kill switch: a kill is an interrupt on the thread; resume continues it with Command."""

import asyncio
import os
from typing import Any

from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from agent_sdk import AsyncAgent
from agent_sdk.integrations.langgraph import KillSwitch

STEPS = int(os.environ.get("STEPS", "5"))


class StandInModel(FakeMessagesListChatModel):
    """langchain-core's fake chat model standing in for the LLM: asks for send_email(n), STEPS times."""

    async def _agenerate(self, messages: list[Any], *args: Any, **kwargs: Any) -> ChatResult:
        await asyncio.sleep(float(os.environ.get("THINK", "0.2")))  # the model "thinks"
        sent = sum(1 for m in messages if isinstance(m, ToolMessage))
        calls = [{"name": "send_email", "args": {"n": sent}, "id": f"call-{sent}"}]
        reply = AIMessage(content="", tool_calls=calls) if sent < STEPS else AIMessage(f"sent {sent} emails")
        return ChatResult(generations=[ChatGeneration(message=reply)])


@tool
async def send_email(n: int) -> str:
    """Send email number n."""
    print(f"sent email {n}", flush=True)
    return f"email {n} sent"


model = StandInModel(responses=[AIMessage("unused")])


async def call_model(state: MessagesState) -> dict[str, Any]:
    return {"messages": [await model.ainvoke(state["messages"])]}


builder = StateGraph(MessagesState)
builder.add_node("agent", call_model)
builder.add_node("tools", ToolNode([send_email]))
builder.add_edge(START, "agent")
builder.add_conditional_edges("agent", tools_condition)
builder.add_edge("tools", "agent")
graph = builder.compile(checkpointer=InMemorySaver())


async def main() -> None:
    config: Any = {"configurable": {"thread_id": "campaign-1"}}
    inputs = {"messages": [HumanMessage("Send the campaign")]}
    async with AsyncAgent("agent://acme/prod/graph-mailer", instance="replica-1", on_kill="pause") as mesh:
        out = await KillSwitch(mesh).ainvoke(graph, inputs, config)  # was: graph.ainvoke(inputs, config)
    print(out["messages"][-1].content, flush=True)


if __name__ == "__main__":
    asyncio.run(main())

"""A LangGraph agent loop on langchain-core's fake chat model, with a tool that logs its calls."""

from __future__ import annotations

import asyncio
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import BaseTool, tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from tests.integrations.helpers import ToolLog


class StepsChatModel(FakeMessagesListChatModel):
    """langchain-core's fake chat model, answering from the conversation: ``work(n)`` for n = the
    tool results it has seen, until ``steps``; then a final answer. ``hold_at`` (1-based calls)
    waits for ``release``, so a test can kill while the model "thinks"."""

    steps: int = 4
    hold_at: set[int] = set()  # noqa: RUF012 - a pydantic field
    calls: int = 0
    entered: Any = None
    release: Any = None

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.calls += 1
        if self.calls in self.hold_at:
            self.entered.set()
            await self.release.wait()
        done = sum(1 for m in messages if isinstance(m, ToolMessage))
        if done < self.steps:
            reply = AIMessage(
                content="", tool_calls=[{"name": "work", "args": {"n": done}, "id": f"call-{done}"}]
            )
        else:
            reply = AIMessage(content=f"did {done} steps")
        return ChatResult(generations=[ChatGeneration(message=reply)])


def make_model(steps: int, hold_at: set[int] | None = None) -> StepsChatModel:
    return StepsChatModel(
        responses=[AIMessage(content="unused")],
        steps=steps,
        hold_at=hold_at or set(),
        entered=asyncio.Event(),
        release=asyncio.Event(),
    )


def make_tool(log: ToolLog) -> BaseTool:
    @tool
    async def work(n: int) -> str:
        """Do step n."""
        return await log.work(n)

    return work


def make_graph(model: StepsChatModel, tools: list[BaseTool], checkpointer: Any = None) -> Any:
    async def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [await model.ainvoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("agent", agent)
    builder.add_node("tools", ToolNode(tools))
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition)
    builder.add_edge("tools", "agent")
    return builder.compile(checkpointer=checkpointer or InMemorySaver())

"""The LangGraph integration, bare and switched: an agent loop on langchain-core's fake chat model."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from typing import Any

from bench.frameworks.timing import Part, added_work, end_to_end_row, interleaved
from bench.support.machine import package_version

__all__ = ["measure_langgraph"]


def _noop_handler() -> Any:
    """A LangChain callback handler that does nothing: what any handler costs LangChain to call."""
    from langchain_core.callbacks import AsyncCallbackHandler

    class Noop(AsyncCallbackHandler):
        run_inline = True

    return Noop()


async def measure_langgraph(mesh: Any, runs: int, steps: int, n: int) -> dict[str, Any]:
    from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
    from langchain_core.outputs import ChatGeneration, ChatResult
    from langchain_core.tools import tool
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.graph import START, MessagesState, StateGraph
    from langgraph.prebuilt import ToolNode, tools_condition

    from agent_sdk.integrations.langgraph import KillSwitch

    class StepsModel(FakeMessagesListChatModel):
        async def _agenerate(self, messages: list[Any], *args: Any, **kwargs: Any) -> ChatResult:
            done = sum(1 for m in messages if isinstance(m, ToolMessage))
            call = [{"name": "work", "args": {"n": done}, "id": f"c{done}"}]
            reply = AIMessage(content="", tool_calls=call) if done < steps else AIMessage("ok")
            return ChatResult(generations=[ChatGeneration(message=reply)])

    @tool
    async def work(n: int) -> str:
        """Step n."""
        return "done"

    model = StepsModel(responses=[AIMessage("unused")])
    switch = KillSwitch(mesh)

    def build(tools: list[Any]) -> Any:
        async def agent(state: MessagesState) -> dict[str, Any]:
            return {"messages": [await model.ainvoke(state["messages"])]}

        b = StateGraph(MessagesState)
        b.add_node("agent", agent)
        b.add_node("tools", ToolNode(tools))
        b.add_edge(START, "agent")
        b.add_conditional_edges("agent", tools_condition)
        b.add_edge("tools", "agent")
        return b.compile(checkpointer=InMemorySaver())

    bare_graph, switched_graph = build([work]), build(switch.guard_tools([work]))
    counter = iter(range(10**9))
    # Each run a new thread: the same work each time. Calls: nodes, model calls and tool calls.
    calls = (steps + 1) + steps + (steps + 1) + steps
    bare, switched = await interleaved(
        lambda: bare_graph.ainvoke(
            {"messages": [HumanMessage("go")]}, {"configurable": {"thread_id": f"b{next(counter)}"}}
        ),
        lambda: switch.ainvoke(
            switched_graph,
            {"messages": [HumanMessage("go")]},
            {"configurable": {"thread_id": f"s{next(counter)}"}},
        ),
        runs,
        calls,
    )
    versions = {
        "langgraph": package_version("langgraph"),
        "langchain-core": package_version("langchain-core"),
    }
    end_to_end = end_to_end_row(
        "LangGraph (graph.ainvoke)", "node, model or tool call", bare, switched, versions
    )

    config = switch.config()
    guarded = switch.guard_tools([work])[0]
    messages = [HumanMessage("go")]
    run_id = uuid.uuid4()
    node_meta = {"langgraph_node": "agent", "langgraph_step": 1}

    async def nothing() -> None:
        return None

    noop_config: Any = {"callbacks": [_noop_handler()]}

    def node_start() -> Awaitable[None]:
        return switch.callback.on_chain_start(None, {}, run_id=run_id, metadata=node_meta, name="agent")

    parts: list[Part] = [
        ("model", "node start: the callback", nothing, node_start),
        ("model", "model call with the callback", lambda: model.ainvoke(messages),
         lambda: model.ainvoke(messages, config=config)),
        ("reference", "model call, a no-op handler (LangChain cost)", lambda: model.ainvoke(messages),
         lambda: model.ainvoke(messages, config=noop_config)),
        ("tool", "guarded tool, with the callback", lambda: work.ainvoke({"n": 1}),
         lambda: guarded.ainvoke({"n": 1}, config=config)),
        ("reference", "tool, a no-op handler (LangChain cost)", lambda: work.ainvoke({"n": 1}),
         lambda: work.ainvoke({"n": 1}, config=noop_config)),
    ]  # fmt: skip
    added = await added_work("LangGraph / LangChain", parts, n)
    return {"end_to_end": end_to_end, "added": added, "versions": versions}

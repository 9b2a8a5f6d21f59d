"""Per-call overhead of the framework integrations, not killed, against the bare framework in the same run.

Two measurements per framework. *Added work*: one model call or tool call's worth of what the
integration adds (its hooks, callback or wrapper, with the framework's own machinery that they
set off), timed call by call against the same call bare: precise, and what the 5 µs budget is
about. *End to end*: the same agent run (OpenAI Agents SDK: a stand-in Model and S tool calls;
LangGraph: an agent loop on langchain-core's fake chat model; MCP: ``call_tool`` on an
in-process server) bare and under the switch, in interleaved pairs, per call; its overhead is the
median of the paired differences, and it carries the framework's own noise (a run costs
milliseconds). ``python -m bench.integrations``.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from importlib import metadata
from typing import Any

from bench.common import bench_server, bench_settings, standard_args
from bench.support.report import envelope, print_table, write_json
from bench.support.stats import percentiles

__all__ = ["main"]

BUDGET_US = 5.0
URI = "agent://bench/integrations/agent"


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


async def _interleaved(
    bare: Callable[[], Awaitable[Any]], switched: Callable[[], Awaitable[Any]], runs: int, calls_per_run: int
) -> tuple[list[float], list[float]]:
    """µs per call of each run, bare and switched taking turns so that drift hits both alike."""
    out_bare: list[float] = []
    out_switched: list[float] = []
    for i in range(runs):
        for fn, out in (
            ((bare, out_bare), (switched, out_switched))
            if i % 2
            else (
                (switched, out_switched),
                (bare, out_bare),
            )
        ):
            gc.disable()
            t0 = time.perf_counter_ns()
            await fn()
            dt = time.perf_counter_ns() - t0
            gc.enable()
            out.append(dt / calls_per_run / 1000)
    return out_bare, out_switched


async def _paired_calls(
    bare: Callable[[], Awaitable[Any]], switched: Callable[[], Awaitable[Any]], n: int
) -> tuple[list[float], list[float]]:
    """µs of each of ``n`` calls of each, bare and switched taking turns call by call (after a warm-up)."""
    for _ in range(min(n, 200)):
        await bare()
        await switched()
    out_bare: list[float] = []
    out_switched: list[float] = []
    clock = time.perf_counter_ns
    gc.disable()
    try:
        for _ in range(n):
            t0 = clock()
            await bare()
            t1 = clock()
            await switched()
            t2 = clock()
            out_bare.append((t1 - t0) / 1000)
            out_switched.append((t2 - t1) / 1000)
    finally:
        gc.enable()
    return out_bare, out_switched


Part = tuple[str, str, Callable[[], Awaitable[Any]], Callable[[], Awaitable[Any]]]


async def _added(name: str, parts: list[Part], n: int) -> dict[str, Any]:
    """Added work per model call and per tool call: each (kind, what, bare, switched) part timed call
    by call; ``kind`` is "model", "tool" or "reference" (shown, not counted)."""
    rows = []
    per: dict[str, float] = {"model": 0.0, "tool": 0.0}
    for kind, what, bare, switched in parts:
        b, s = await _paired_calls(bare, switched, n)
        added = statistics.median(s) - statistics.median(b)
        if kind in per:
            per[kind] += added
        rows.append(
            {
                "kind": kind,
                "what": what,
                "bare_us": percentiles(b),
                "switched_us": percentiles(s),
                "added_us_median": round(added, 3),
            }
        )
    return {
        "integration": name,
        "added_us_per_tool_call": round(per["tool"], 3),
        "added_us_per_model_call": round(per["model"], 3)
        if any(r["kind"] == "model" for r in rows)
        else None,
        "within_budget": per["tool"] <= BUDGET_US,
        "parts": rows,
    }


def _row(
    name: str, unit: str, bare: list[float], switched: list[float], versions: dict[str, Any]
) -> dict[str, Any]:
    paired = [s - b for b, s in zip(bare, switched, strict=True)]
    return {
        "integration": name,
        "unit": unit,
        "bare_us": percentiles(bare),
        "switched_us": percentiles(switched),
        "overhead_us_paired": percentiles(paired),
        "overhead_ratio": round(statistics.median(switched) / statistics.median(bare), 3),
        "versions": versions,
    }


# -- OpenAI Agents SDK -----------------------------------------------------------------------------
async def _openai_agents(mesh: Any, runs: int, steps: int, n: int) -> dict[str, Any]:
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
    bare, switched = await _interleaved(
        lambda: Runner.run(agent, "go", max_turns=steps + 2),
        lambda: switch.run(agent, "go", max_turns=steps + 2),
        runs,
        calls,
    )
    versions = {"openai-agents": _version("openai-agents")}
    end_to_end = _row("OpenAI Agents SDK (Runner.run)", "model or tool call", bare, switched, versions)

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
    added = await _added("OpenAI Agents SDK", parts, n)
    return {"end_to_end": end_to_end, "added": added, "versions": versions}


def _noop_handler() -> Any:
    """A LangChain callback handler that does nothing: what any handler costs LangChain to call."""
    from langchain_core.callbacks import AsyncCallbackHandler

    class Noop(AsyncCallbackHandler):
        run_inline = True

    return Noop()


# -- LangGraph ------------------------------------------------------------------------------------------
async def _langgraph(mesh: Any, runs: int, steps: int, n: int) -> dict[str, Any]:
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
    bare, switched = await _interleaved(
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
    versions = {"langgraph": _version("langgraph"), "langchain-core": _version("langchain-core")}
    end_to_end = _row("LangGraph (graph.ainvoke)", "node, model or tool call", bare, switched, versions)

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
    added = await _added("LangGraph / LangChain", parts, n)
    return {"end_to_end": end_to_end, "added": added, "versions": versions}


# -- MCP --------------------------------------------------------------------------------------------------
async def _mcp(mesh: Any, runs: int, per_run: int, n: int) -> dict[str, Any]:
    from mcp import Client
    from mcp.server.mcpserver import MCPServer

    from agent_sdk.integrations.mcp import guard_session

    server = MCPServer("bench")

    @server.tool()
    def noop() -> str:
        """Nothing."""
        return "ok"

    async def noop_call(name: str, arguments: Any = None, *args: Any, **kwargs: Any) -> None:
        return None

    async with Client(server) as bare_client, Client(server) as guarded_client, Client(server) as hollow:
        guarded = guard_session(guarded_client.session, mesh)
        plain = bare_client.session

        async def bare() -> None:
            for _ in range(per_run):
                await plain.call_tool("noop", {})

        async def switched() -> None:
            for _ in range(per_run):
                await guarded.call_tool("noop", {})

        b, s = await _interleaved(bare, switched, runs, per_run)
        # The wrapper alone: guard a session whose call_tool does nothing.
        object.__setattr__(hollow.session, "call_tool", noop_call)
        wrapped = guard_session(hollow.session, mesh)
        added = await _added(
            "MCP",
            [
                (
                    "tool",
                    "call_tool: the guarded wrapper",
                    lambda: noop_call("noop", {}),
                    lambda: wrapped.call_tool("noop", {}),
                )
            ],
            n,
        )
    versions = {"mcp": _version("mcp")}
    end_to_end = _row("MCP (ClientSession.call_tool, in-process)", "tool call", b, s, versions)
    return {"end_to_end": end_to_end, "added": added, "versions": versions}


async def _measure(url: str, runs: int, steps: int, mcp_calls: int, n: int) -> list[dict[str, Any]]:
    from agent_sdk import AsyncAgent

    async with AsyncAgent(URI, instance="bench-0", settings=bench_settings(url), hard_kill=False) as mesh:
        return [
            await _openai_agents(mesh, runs, steps, n),
            await _langgraph(mesh, runs, steps, n),
            await _mcp(mesh, runs, mcp_calls, n),
        ]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = standard_args("Per-call overhead of the framework integrations, not killed")
    parser.add_argument("--runs", type=int, default=200, help="end-to-end runs of each kind (bare, switched)")
    parser.add_argument("--steps", type=int, default=5, help="tool calls per agent run")
    parser.add_argument("--mcp-calls", type=int, default=20, help="call_tool calls per MCP run")
    parser.add_argument("--n", type=int, default=20_000, help="calls timed one by one for the added work")
    args = parser.parse_args(argv)
    with bench_server(args.nats_url) as url:
        results = asyncio.run(_measure(url, args.runs, args.steps, args.mcp_calls, args.n))
    added_table = [
        [
            r["added"]["integration"],
            p["kind"],
            p["what"],
            f"{p['bare_us']['p50']:.2f} / {p['bare_us']['p99']:.2f}",
            f"{p['switched_us']['p50']:.2f} / {p['switched_us']['p99']:.2f}",
            f"{p['added_us_median']:+.2f}",
            p["switched_us"]["n"],
        ]
        for r in results
        for p in r["added"]["parts"]
    ]
    print_table(
        f"Added work, not killed (each call timed; N = {args.n:,} calls per row)",
        ["integration", "kind", "what", "bare us p50/p99", "switched us p50/p99", "added us (median)", "N"],
        added_table,
    )
    totals = [
        [
            r["added"]["integration"],
            "-"
            if r["added"]["added_us_per_model_call"] is None
            else f"{r['added']['added_us_per_model_call']:+.2f}",
            f"{r['added']['added_us_per_tool_call']:+.2f}",
            "yes" if r["added"]["within_budget"] else "NO",
            ", ".join(f"{k} {v}" for k, v in r["versions"].items()),
        ]
        for r in results
    ]
    print_table(
        "Added work per call",
        ["integration", "per model call us", "per tool call us", f"tool <= {BUDGET_US:g} us", "versions"],
        totals,
    )
    e2e = [
        [
            r["end_to_end"]["integration"],
            r["end_to_end"]["unit"],
            f"{r['end_to_end']['bare_us']['p50']:.1f} / {r['end_to_end']['bare_us']['p99']:.1f}",
            f"{r['end_to_end']['switched_us']['p50']:.1f} / {r['end_to_end']['switched_us']['p99']:.1f}",
            f"{r['end_to_end']['overhead_us_paired']['p50']:+.1f}",
            f"{r['end_to_end']['overhead_ratio']:.3f}x",
            r["end_to_end"]["switched_us"]["n"],
        ]
        for r in results
    ]
    print_table(
        f"End to end, per call ({args.runs} interleaved pairs of runs; overhead = median paired difference)",
        ["run", "per", "bare us p50/p99", "switched us p50/p99", "overhead us", "ratio", "N runs"],
        e2e,
    )
    params = {"runs": args.runs, "steps": args.steps, "mcp_calls": args.mcp_calls, "n": args.n}
    data = envelope("integrations", params, {"budget_us": BUDGET_US, "frameworks": results})
    write_json("integrations", data, args.out)
    return data


if __name__ == "__main__":
    main()

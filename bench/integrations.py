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
from typing import Any

from bench.common import bench_server, bench_settings, standard_args
from bench.frameworks.langgraph_run import measure_langgraph
from bench.frameworks.mcp_run import measure_mcp
from bench.frameworks.openai_run import measure_openai_agents
from bench.frameworks.timing import BUDGET_US
from bench.support.report import envelope, print_table, write_json

__all__ = ["main"]

URI = "agent://bench/integrations/agent"


async def _measure(url: str, runs: int, steps: int, mcp_calls: int, n: int) -> list[dict[str, Any]]:
    from agent_sdk import AsyncAgent

    async with AsyncAgent(URI, instance="bench-0", settings=bench_settings(url), hard_kill=False) as mesh:
        return [
            await measure_openai_agents(mesh, runs, steps, n),
            await measure_langgraph(mesh, runs, steps, n),
            await measure_mcp(mesh, runs, mcp_calls, n),
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

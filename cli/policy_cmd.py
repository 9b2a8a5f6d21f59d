"""``mesh policy set|list|rm`` and ``mesh usage``: limits that kill automatically, and what agents used."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from mesh.protocol.policy import Policy
    from mesh.protocol.usage import UsageReport

app = typer.Typer(
    name="policy",
    help=(
        "Policies: limits on usage counters, instances, runtime or silence; a breach kills (or pauses) "
        "every instance of the breaching agent, with actor policy:NAME.\n\n"
        "Example: mesh policy set mail-cap 'agent://acme/prod/*' --limit 'emails<=10000/1h'"
    ),
    no_args_is_help=True,
    rich_markup_mode=None,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


@app.command("set")
def set_(
    name: Annotated[str, typer.Argument(help="The policy's name (letters, digits, '_' and '-').")],
    target: Annotated[str, typer.Argument(help="agent://ORG/ENV/NAME; any segment may be *.")],
    limit: Annotated[
        list[str],
        typer.Option(
            "--limit",
            "-l",
            help="COUNTER<=NUMBER[/WINDOW], instances<=N, runtime<=DURATION or silence<=DURATION "
            "(repeatable).",
        ),
    ],
    action: Annotated[
        str, typer.Option("--action", "-a", help="kill (raise), pause, or alert (report only).")
    ] = "kill",
    grace: Annotated[
        float, typer.Option("--grace", "-g", min=0, help="Seconds before a stuck instance is terminated.")
    ] = 10.0,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Evaluate on live traffic and report what it would do; do nothing."),
    ] = False,
    on_unreachable: Annotated[
        str,
        typer.Option(
            "--on-unreachable",
            help="With the controller down, an instance spends its lease, then waits (fail-closed) "
            "or proceeds unchecked (fail-open).",
        ),
    ] = "wait",
    json_out: JsonOpt = False,
) -> None:
    """Create or replace a policy; the controller enforces it within about a second.

    Counter limits hold before the action for agents that call agent.spend() (quota leases).

    Example: mesh policy set mail-cap 'agent://acme/prod/*' -l 'emails<=10000/1h' -l 'cost_usd<=50/1d'
    """
    from cli.common import with_mesh
    from mesh.transport.policystore import build_policy

    # Validated here first, so that a bad expression never needs a server to be refused.
    policy = build_policy(
        name, target, limit, action=action, grace=grace, dry_run=dry_run, on_unreachable=on_unreachable
    )
    saved = with_mesh(
        lambda m: m.set_policy(
            name,
            policy.target,
            policy.limits,
            policy.action,
            grace,
            dry_run=policy.dry_run,
            on_unreachable=policy.on_unreachable,
        )
    )
    if json_out:
        print(json.dumps(_policy_json(saved)))
        return
    limits = ", ".join(str(lim) for lim in saved.limits)
    print(
        f"Policy {saved.name} set on {saved.target}: {limits} -> {_action(saved)} (grace {saved.grace:g}s, "
        f"{'fail-open' if saved.on_unreachable == 'proceed' else 'fail-closed'})"
    )


def _action(p: Policy) -> str:
    return f"{p.action} (dry run)" if p.dry_run else p.action


def _policy_json(p: Policy) -> dict[str, object]:
    from mesh.protocol.shapes import policy_json

    return policy_json(p)


@app.command("list")
def list_(json_out: JsonOpt = False) -> None:
    """List the policies in force.

    Example: mesh policy list --json
    """
    from cli import fmt
    from cli.common import with_mesh

    policies = with_mesh(lambda m: m.list_policies())
    if json_out:
        print(json.dumps([_policy_json(p) for p in policies]))
        return
    rows = [
        [p.name, p.target, ", ".join(str(lim) for lim in p.limits), _action(p), f"{p.grace:g}s", p.created_by]
        for p in policies
    ]
    if rows:
        for line in fmt.table(["NAME", "TARGET", "LIMITS", "ACTION", "GRACE", "BY"], rows):
            print(line)
    print(f"{len(rows)} {'policy' if len(rows) == 1 else 'policies'}")


@app.command("rm")
def rm(name: Annotated[str, typer.Argument(help="The policy's name.")]) -> None:
    """Remove a policy. Agents it killed stay killed: resume them with `mesh resume`.

    Example: mesh policy rm mail-cap
    """
    from cli.common import with_mesh

    with_mesh(lambda m: m.remove_policy(name))
    print(f"Policy {name} removed (agents it stopped stay stopped until resumed)")


def render_usage(report: UsageReport) -> list[str]:
    from cli import fmt

    def counters(values: dict[str, float]) -> str:
        return ", ".join(f"{k} {fmt.number(v)}" for k, v in sorted(values.items())) or "-"

    rows: list[list[str]] = []
    for agent in report.agents:
        rows.append([agent.agent_uri, "(all)", "", counters(agent.totals), counters(agent.per_hour)])
        for i in agent.instances:
            rows.append(["", i.instance, i.status, counters(i.totals), counters(i.per_hour)])
    lines = fmt.table(["AGENT", "INSTANCE", "STATUS", "TOTALS", "PER HOUR"], rows) if rows else []
    budgets = [
        [
            agent.agent_uri,
            b.policy + (" (dry run)" if b.dry_run else ""),
            b.limit,
            fmt.number(b.spent),
            fmt.number(b.leased_out),
            fmt.number(b.left),
        ]
        for agent in report.agents
        for b in agent.budgets
    ]
    if budgets:
        lines.append("")
        lines.extend(fmt.table(["AGENT", "POLICY", "LIMIT", "SPENT", "LEASED OUT", "LEFT"], budgets))
    n = len(report.agents)
    lines.append(f"{n} {'agent' if n == 1 else 'agents'}")
    return lines


def usage(
    pattern: Annotated[str, typer.Argument(help="agent://ORG/ENV/NAME; any segment may be *.")] = (
        "agent://*/*/*"
    ),
    since: Annotated[
        str | None,
        typer.Option("--since", help="Only instances heard from since: 30m, 1d or an ISO time."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Usage counters per agent and instance: totals, and average rates per hour; and per agent,
    each policy's counter limits: the limit, what is spent, what is leased out, and what is left.

    Example: mesh usage 'agent://acme/prod/*' --since 1d --json
    """
    from cli.common import with_mesh
    from mesh.protocol.target import parse_target
    from mesh.transport.eventlog import parse_since

    target = parse_target(pattern)
    when = parse_since(since)
    report = with_mesh(lambda m: m.usage(target, when))
    if json_out:
        print(json.dumps(report.to_json()))
        return
    for line in render_usage(report):
        print(line)

"""``mesh list``, ``mesh events`` and ``mesh status``: read-only views of the fleet and the audit log."""

from __future__ import annotations

import contextlib
import json
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from mesh.client.operator import AsyncMesh
    from mesh.protocol.models import AuditEvent, InstanceStatus
    from mesh.protocol.reports import AgentStatus

PatternArg = Annotated[str, typer.Argument(help="agent://ORG/ENV/NAME; any segment may be *.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def instance_json(s: InstanceStatus) -> dict[str, object]:
    from mesh.protocol.shapes import instance_json as shape

    return shape(s)


def render_list(instances: list[InstanceStatus]) -> list[str]:
    from collections import Counter

    from cli import fmt

    rows = [
        [
            s.agent_uri,
            s.instance,
            s.status.value + ("" if s.hard_kill else " (no hard kill)"),
            fmt.ago(s.last_seen),
            fmt.short(fmt.metadata(s.metadata), 60),
        ]
        for s in instances
    ]
    lines = fmt.table(["AGENT", "INSTANCE", "STATUS", "LAST SEEN", "METADATA"], rows) if rows else []
    counts = Counter(s.status.value for s in instances)
    noun = "instance" if len(instances) == 1 else "instances"
    detail = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    lines.append(f"{len(instances)} {noun}" + (f": {detail}" if detail else ""))
    return lines


def list_(
    pattern: PatternArg = "agent://*/*/*",
    status: Annotated[
        str | None,
        typer.Option(
            "--status",
            "-s",
            help="Only this status (active, paused, killed, terminated, stale, lost, crashed, stopped).",
        ),
    ] = None,
    watch: Annotated[bool, typer.Option("--watch", help="Redraw every second until Ctrl+C.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """List agent instances and their live status, as the controller last recorded them.

    Example: mesh list 'agent://myorg/production/*' --status paused
    """
    from cli.common import with_mesh
    from mesh.errors import ConfigError
    from mesh.protocol.models import Status
    from mesh.protocol.target import parse_target

    target = parse_target(pattern)
    if status is not None and status not in {s.value for s in Status}:
        raise ConfigError(f"invalid --status {status!r}: use one of {', '.join(s.value for s in Status)}")
    if not watch:
        instances = with_mesh(lambda m: m.list_instances(target, status))
        if json_out:
            print(json.dumps([instance_json(s) for s in instances]))
        else:
            print("\n".join(render_list(instances)))
        return

    async def loop(mesh: AsyncMesh) -> None:
        import asyncio

        from cli import fmt

        while True:
            instances = await mesh.list_instances(target, status)
            frame = [f"{fmt.clock()} {target}  (Ctrl+C to stop)", "", *render_list(instances)]
            print("\x1b[H\x1b[2J" + "\n".join(frame), flush=True)
            await asyncio.sleep(1.0)

    try:
        with_mesh(loop)
    except KeyboardInterrupt:
        print()


def event_json(e: AuditEvent) -> dict[str, object]:
    from mesh.protocol.shapes import event_json as shape

    return shape(e)


def render_event(e: AuditEvent) -> str:
    from cli import fmt

    moment = e.time.astimezone()
    who = e.agent_uri + (f"#{e.instance}" if e.instance else "") if e.agent_uri else (e.target or "")
    if not e.agent_uri and e.target and e.instance:
        who += f"#{e.instance}"
    parts = [f"{moment:%Y-%m-%d %H:%M:%S}", e.type.value.ljust(10), who]
    if e.actor and not e.agent_uri:
        parts.append(f"by {e.actor}")
    if e.reason and not e.agent_uri:
        parts.append(f"reason: {e.reason!r}")
    status = e.data.get("status") if isinstance(e.data, dict) else None
    if status:
        parts.append(str(status))
    meta = e.data.get("metadata") if isinstance(e.data, dict) else None
    if isinstance(meta, dict) and meta:
        parts.append(f"({fmt.metadata(meta)})")
    if e.command_id:
        parts.append(f"[command {e.command_id[:8]}]")
    return "  ".join(parts)


def events(
    pattern: PatternArg = "agent://*/*/*",
    since: Annotated[
        str | None, typer.Option("--since", help="Only newer events: 30s, 15m, 1h, 2d or an ISO time.")
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new events until Ctrl+C.")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Print audit events (kills, resumes, halts, status changes), oldest first, one per line.

    Example: mesh events agent://myorg/production/email-campaign --since 1h
    """
    from cli.common import with_mesh
    from mesh.protocol.target import parse_target
    from mesh.transport.eventlog import parse_since

    target = parse_target(pattern)
    start = parse_since(since)

    async def run(mesh: AsyncMesh) -> None:
        async for event in mesh.events(target, start, follow):
            line = json.dumps(event_json(event), default=str) if json_out else render_event(event)
            print(line, flush=follow)

    with contextlib.suppress(KeyboardInterrupt):
        with_mesh(run)


def render_status(st: AgentStatus) -> list[str]:
    from cli import fmt

    lines = [st.agent_uri]
    if st.records:
        lines.append(f"KILLED: {len(st.records)} kill record(s) in force")
        for held in st.records:
            rec = held.record
            why = f", reason: {rec.reason!r}" if rec.reason else ""
            lines.append(f"  {held.target}  by {rec.actor}, {fmt.ago(rec.issued_at)}{why}")
    else:
        lines.append("no kill record in force")
    if not st.instances:
        lines.append("no instances known (is the controller running?)")
        return lines
    rows = []
    for inst in st.instances:
        cp = st.checkpoints.get(inst.instance)
        rows.append(
            [
                inst.instance,
                inst.status.value,
                fmt.ago(inst.last_seen),
                fmt.short(fmt.metadata(inst.metadata), 40),
                fmt.short(fmt.dumps(cp.state), 40) if cp is not None else "-",
            ]
        )
    lines.append("")
    lines += fmt.table(["INSTANCE", "STATUS", "LAST SEEN", "METADATA", "CHECKPOINT"], rows)
    return lines


def status(
    uri: Annotated[str, typer.Argument(help="agent://ORG/ENV/NAME (exact), optionally #INSTANCE.")],
    json_out: JsonOpt = False,
) -> None:
    """Show one agent: the kill records in force over it, its instances, their checkpoints and metadata.

    Example: mesh status agent://myorg/production/email-campaign
    """
    from cli.common import with_mesh
    from mesh.protocol.target import parse_target

    target = parse_target(uri)
    if not target.is_exact:
        from mesh.errors import InvalidTarget

        raise InvalidTarget(uri, "uri", "status needs one agent, not a pattern: use `mesh list` for patterns")
    st = with_mesh(lambda m: m.status(str(target)))
    if json_out:
        print(json.dumps(st.to_json(), default=str))
    else:
        print("\n".join(render_status(st)))

"""``mesh kill`` and ``mesh resume``: write or clear a kill record and print who acknowledged."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from mesh.protocol.reports import AckRow, KillReport, ResumeReport, SilentInstance

EXIT_INCOMPLETE = 3

TargetArg = Annotated[
    str, typer.Argument(help="agent://ORG/ENV/NAME; any segment may be *; #INSTANCE narrows to one instance.")
]
InstanceOpt = Annotated[str | None, typer.Option("--instance", "-i", help="Only this instance id.")]
ReasonOpt = Annotated[str | None, typer.Option("--reason", "-r", help="Why: recorded in the audit log.")]
WaitOpt = Annotated[float, typer.Option("--wait", "-w", min=0, help="Seconds to collect acknowledgements.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the report as one JSON object.")]


def _label(agent_uri: str, instance: str, target_uri: str) -> str:
    return instance if agent_uri == target_uri else f"{agent_uri}#{instance}"


def _rows(rows: list[AckRow], silent: list[SilentInstance], target_uri: str) -> list[tuple[str, str]]:
    from cli import fmt

    labels = [_label(r.agent_uri, r.instance, target_uri) for r in rows]
    labels += [_label(s.agent_uri, s.instance, target_uri) for s in silent]
    width = max((len(label) for label in labels), default=0) + 1
    out: list[tuple[str, str]] = []
    for row, label in zip(rows, labels, strict=False):
        detail = fmt.metadata(row.metadata)
        out.append(
            (
                fmt.clock(row.time),
                f"{(label + ':').ljust(width)} {row.status.upper()}" + (f" ({detail})" if detail else ""),
            )
        )
    return out


def _silent_lines(silent: list[SilentInstance], target_uri: str, wait: float, why: str) -> list[str]:
    from cli import fmt

    return [
        f"  {_label(s.agent_uri, s.instance, target_uri)}: {why} within {wait:g}s "
        f"(last seen {fmt.ago(s.last_seen)}, was {s.status})"
        for s in silent
    ]


def print_kill(report: KillReport, wait: float) -> None:
    from cli import fmt
    from mesh.protocol.target import parse_target

    target_uri = parse_target(report.target).uri
    count = max(report.expected, report.acked)
    noun = "instance" if count == 1 else "instances"
    print(
        f"{fmt.clock(report.issued_at)} Kill signal sent to {count} {noun} of {report.target} "
        f"(command {report.command_id[:8]}…, by {report.actor})"
    )
    for stamp, line in _rows(report.instances, [], target_uri):
        print(f"{stamp} {line}")
    for s in report.already_halted:
        print(f"{fmt.clock()} {_label(s.agent_uri, s.instance, target_uri)}: already halted by another kill")
    totals = ", ".join(f"{name} {fmt.number(value)}" for name, value in report.totals.items())
    halted = report.acked + len(report.already_halted)
    if report.missing:
        summary = f"{halted} of {halted + len(report.missing)} halted; {len(report.missing)} silent:"
    elif count == 0:
        summary = (
            f"No instance answered within {wait:g}s; the kill stays in force "
            "and stops any instance before its next action."
        )
    else:
        summary = f"All {halted} {'instance' if halted == 1 else 'instances'} halted."
    print(f"{fmt.clock()} " + (f"Total: {totals}. " if totals else "") + summary)
    for line in _silent_lines(report.missing, target_uri, wait, "no acknowledgement"):
        print(line)


def print_resume(report: ResumeReport, wait: float) -> None:
    from cli import fmt
    from mesh.protocol.target import parse_target

    target_uri = parse_target(report.target).uri
    print(
        f"{fmt.clock(report.issued_at)} Resume sent to {report.target} "
        f"(command {report.command_id[:8]}…, by {report.actor})"
    )
    if not report.cleared:
        print(f"{fmt.clock()} Note: no kill record for exactly {report.target} was in force")
    for stamp, line in _rows(report.instances, [], target_uri):
        print(f"{stamp} {line}")
    if report.acked:
        noun = "instance" if report.acked == 1 else "instances"
        print(f"{fmt.clock()} {report.acked} {noun} resumed from checkpoint")
    for line in _silent_lines(report.missing, target_uri, wait, "did not confirm resuming"):
        print(line)
    for held in report.still_held_by:
        rec = held.record
        why = f", reason: {rec.reason}" if rec.reason else ""
        print(
            f"{fmt.clock()} Still halted by {held.target} (by {rec.actor} at "
            f"{fmt.clock(rec.issued_at).strip('[]')}{why}): run `mesh resume '{held.target}'` to clear it"
        )


def kill(
    target: TargetArg,
    instance: InstanceOpt = None,
    reason: ReasonOpt = None,
    grace: Annotated[
        float,
        typer.Option(
            "--grace",
            "-g",
            min=0,
            help="Seconds before an instance that never reaches a safe point is terminated by its SDK.",
        ),
    ] = 10.0,
    wait: WaitOpt = 2.0,
    json_out: JsonOpt = False,
) -> None:
    """Stop every instance matching TARGET at its next safe point, and report what each had done.

    Exit codes: 0 all expected instances halted, 3 some stayed silent, 1 error, 2 usage error.

    Example: mesh kill agent://myorg/production/email-campaign --reason "broken link in template"
    """
    from cli.common import with_mesh
    from mesh.protocol.target import parse_target

    parsed = parse_target(target, instance)
    report = with_mesh(lambda m: m.kill(parsed, reason=reason, grace=grace, wait=wait))
    if json_out:
        print(json.dumps(report.to_json(), default=str))
    else:
        print_kill(report, wait)
    if report.missing:
        raise typer.Exit(EXIT_INCOMPLETE)


def resume(
    target: TargetArg,
    instance: InstanceOpt = None,
    reason: ReasonOpt = None,
    wait: WaitOpt = 2.0,
    json_out: JsonOpt = False,
) -> None:
    """Clear the kill record of TARGET; its instances continue from where they stopped.

    Exit codes: 0 resumed, 3 another kill record still holds part of TARGET or an instance stayed
    silent, 1 error, 2 usage error.

    Example: mesh resume agent://myorg/production/email-campaign --reason "template fixed"
    """
    from cli.common import with_mesh
    from mesh.protocol.target import parse_target

    parsed = parse_target(target, instance)
    report = with_mesh(lambda m: m.resume(parsed, reason=reason, wait=wait))
    if json_out:
        print(json.dumps(report.to_json(), default=str))
    else:
        print_resume(report, wait)
    if not report.complete:
        raise typer.Exit(EXIT_INCOMPLETE)

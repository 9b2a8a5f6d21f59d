"""``mesh audit verify``: check the audit stream's hash chains and name the first break."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from mesh.client.operator import AsyncMesh
    from mesh.protocol.auditverify import Anchor, VerifyReport

app = typer.Typer(help="Check the audit log.", no_args_is_help=True)


def _anchors(path: Path) -> dict[str, Anchor]:
    from pydantic import ValidationError

    from mesh.errors import ConfigError
    from mesh.protocol.auditverify import Anchor

    try:
        doc = json.loads(path.read_text())
        return {chain: Anchor.model_validate(a) for chain, a in dict(doc["anchors"]).items()}
    except (OSError, ValueError, KeyError, TypeError, ValidationError) as exc:
        raise ConfigError(
            f"invalid --anchor {str(path)!r}: expected the output of `mesh audit verify --json` ({exc})"
        ) from None


def summary(report: VerifyReport) -> list[str]:
    span = f"stream seq {report.first_seq}-{report.last_seq}" if report.events else "empty stream"
    end = report.stream_last_seq
    if (
        report.broken is not None
        and end is not None
        and report.last_seq is not None
        and end > report.last_seq
    ):
        span += f"; stopped at the first break, the stream goes on to {end}"
    partial = sum(1 for h in report.chains.values() if h.partial)
    lines = [
        f"audit log: {report.events} events ({span}), {report.chained} chained in "
        f"{len(report.chains)} chains" + (f" ({partial} started before this walk)" if partial else "")
    ]
    if report.unchained:
        late = (
            f", {report.unchained_after_chained} after chaining began"
            if report.unchained_after_chained
            else ""
        )
        lines.append(f"  {report.unchained} unchained (written without a chain{late}): not verifiable")
    if report.malformed:
        lines.append(f"  {report.malformed} messages that are not audit events")
    if report.anchors_checked:
        lines.append(f"  {report.anchors_checked} anchored chain heads checked")
    lines.append(report.broken.line() if report.broken else "intact")
    return lines


def verify(
    since: Annotated[
        str | None, typer.Option("--since", help="Only events from then on: 30m, 2d or an ISO time.")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as one JSON object.")] = False,
    anchor: Annotated[
        Path | None,
        typer.Option(
            "--anchor",
            help="A report saved earlier with --json (kept off the servers): its heads must still be there.",
        ),
    ] = None,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict", help="An unchained event after the first chained one, or a non-event, is a break."
        ),
    ] = False,
) -> None:
    """Walk the audit stream and check every writer's hash chain; exit 1 naming the first break.

    Example: mesh audit verify --json > audit-heads.json; later: mesh audit verify --anchor audit-heads.json
    """
    from cli.common import with_mesh
    from mesh.errors import AuditChainBroken
    from mesh.protocol.auditverify import report_json
    from mesh.transport.auditwalk import verify_stream
    from mesh.transport.eventlog import parse_since

    start = parse_since(since)
    anchors = _anchors(anchor) if anchor else None

    async def run(mesh: AsyncMesh) -> VerifyReport:
        return await verify_stream(mesh.connection, since=start, anchors=anchors, strict=strict)

    report = with_mesh(run)
    if json_out:
        doc: dict[str, Any] = report_json(report)
        print(json.dumps(doc, default=str))
    else:
        print("\n".join(summary(report)))
    if report.broken is not None:
        b = report.broken
        raise AuditChainBroken(b.line(), kind=b.kind.value, stream_seq=b.stream_seq, chain=b.chain)


app.command("verify")(verify)

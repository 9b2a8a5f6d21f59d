"""Walking the audit stream for ``mesh audit verify``: every stored message in order, then the verifier."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from datetime import datetime

import nats.errors
import structlog
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from mesh.protocol.auditverify import Anchor, StoredMessage, VerifyReport, verify
from mesh.transport.connection import Connection, translate_error

__all__ = ["read_stored", "verify_stream"]

log = structlog.get_logger("mesh.audit")
BATCH = 512
#: How long one fetch waits for messages.
FETCH_TIMEOUT = 5.0
#: Fetches in a row that deliver nothing before a read short of the stream's end gives up.
IDLE_FETCHES = 3


async def read_stored(conn: Connection, *, upto: int, since: datetime | None = None) -> list[StoredMessage]:
    """The audit stream's messages, oldest first (from ``since``), up to stream seq ``upto``.

    It reads until it reaches ``upto`` rather than trusting the consumer's pending count, which
    can be stale on a cluster while a replica catches up; a read that stops early is reported by
    the verifier as a missing tail, never taken for the end.
    """
    config = ConsumerConfig(
        ack_policy=AckPolicy.NONE,
        deliver_policy=DeliverPolicy.BY_START_TIME if since else DeliverPolicy.ALL,
        opt_start_time=since.isoformat() if since else None,  # type: ignore[arg-type]
        inactive_threshold=60.0,
    )
    stream = conn.ns.audit_stream
    try:
        psub = await conn.js.pull_subscribe(conn.ns.audit_wildcard, stream=stream, config=config)
    except Exception as exc:
        raise translate_error(exc, "read audit events", subject=stream) from exc
    out: list[StoredMessage] = []
    last = 0
    idle = 0
    try:
        while last < upto:
            try:
                msgs = await psub.fetch(BATCH, timeout=FETCH_TIMEOUT)
            except (TimeoutError, nats.errors.TimeoutError):
                # An ephemeral consumer may sit on a replica that is still catching up (a node
                # that just rejoined): it serves what that replica has. Give it time to catch up.
                idle += 1
                if idle >= IDLE_FETCHES:
                    break
                continue
            idle = 0
            for msg in msgs:
                seq = msg.metadata.sequence.stream
                if seq > upto:
                    return out  # published after we looked: the next verify covers it
                out.append(StoredMessage(seq, msg.subject, msg.data, dict(msg.headers or {})))
                last = seq
    finally:
        with contextlib.suppress(Exception):
            await psub.unsubscribe()
    return out


async def verify_stream(
    conn: Connection,
    *,
    since: datetime | None = None,
    anchors: Mapping[str, Anchor] | None = None,
    strict: bool = False,
) -> VerifyReport:
    """Verify the audit stream as it stands now (messages added meanwhile are left for next time)."""
    stream = conn.ns.audit_stream
    try:
        info = await conn.js.stream_info(stream)
    except Exception as exc:
        raise translate_error(exc, "read the audit stream", subject=stream) from exc
    state = info.state
    msgs = await read_stored(conn, since=since, upto=state.last_seq) if state.messages else []
    # Only a walk from the stream's very first message may insist that every chain starts at #1.
    complete = since is None and state.first_seq <= 1
    report = verify(
        msgs, complete=complete, last_seq=state.last_seq if msgs else None, anchors=anchors, strict=strict
    )
    if state.lost is not None:
        log.warning("the server reports lost audit data", lost=str(state.lost))
    log.debug("audit verified", events=report.events, chains=len(report.chains), ok=report.ok)
    return report

"""Reading the audit stream: matching events to a pattern, replaying and following, durable consumers."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import nats.errors
import structlog
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext

from mesh.errors import ConfigError, InvalidTarget, MalformedMessage, MeshError
from mesh.protocol.codec import decode
from mesh.protocol.models import AuditEvent, utcnow
from mesh.protocol.target import Target, parse_agent_uri, parse_target
from mesh.transport.connection import Connection, translate_error
from mesh.transport.refusals import Refusals

__all__ = ["event_matches", "parse_since", "read_events", "subscribe_audit"]

_DURABLE = re.compile(r"[A-Za-z0-9_-]{1,64}")
BATCH = 256
#: How long one fetch of a (not following) read waits, and how many empty ones end it short.
READ_FETCH_TIMEOUT = 5.0
READ_IDLE_FETCHES = 3

log = structlog.get_logger("mesh.eventlog")


def event_matches(pattern: Target, event: AuditEvent) -> bool:
    """Whether ``event`` concerns something under ``pattern``.

    Instance events match by URI (and instance); commands match when their target overlaps.
    """
    try:
        if event.agent_uri:
            return pattern.matches(parse_agent_uri(event.agent_uri), event.instance)
        if event.target:
            return pattern.overlaps(parse_target(event.target, event.instance))
    except InvalidTarget:
        return False
    return pattern.tokens == ("*", "*", "*") and pattern.instance is None


_AGO = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(value: datetime | timedelta | str | None, *, now: datetime | None = None) -> datetime | None:
    """``1h``, ``30m``, ``2d``, a timedelta, or an ISO time (naive means UTC) -> an aware datetime."""
    if value is None:
        return None
    now = now or utcnow()
    if isinstance(value, timedelta):
        return now - value
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    text = value.strip()
    ago = _AGO.fullmatch(text)
    if ago:
        return now - timedelta(seconds=float(ago.group(1)) * _UNIT[ago.group(2)])
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"invalid --since {value!r}: use a duration like 30s, 15m, 1h, 2d, "
            "or an ISO time like 2025-01-31T09:00"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _decode(msg: Msg) -> AuditEvent | None:
    try:
        return decode(AuditEvent, msg.data)
    except MalformedMessage:
        return None


async def read_events(
    conn: Connection,
    pattern: Target,
    *,
    since: datetime | None = None,
    follow: bool = False,
    poll: float = 1.0,
) -> AsyncIterator[AuditEvent]:
    """Audit events under ``pattern``, oldest first; with ``follow``, keep waiting for new ones."""
    config = ConsumerConfig(
        ack_policy=AckPolicy.NONE,
        deliver_policy=DeliverPolicy.BY_START_TIME if since else DeliverPolicy.ALL,
        opt_start_time=since.isoformat() if since else None,  # type: ignore[arg-type]
        inactive_threshold=60.0,
    )
    stream = conn.ns.audit_stream
    name = conn.credential_id
    try:
        upto = 0 if follow else (await conn.js.stream_info(stream)).state.last_seq
        if name is None:
            psub = await conn.js.pull_subscribe(conn.ns.audit_wildcard, stream=stream, config=config)
        else:
            psub = await _scoped_reader(conn, name, pattern, config)
        info = await psub.consumer_info()
    except MeshError:
        raise
    except Exception as exc:
        raise translate_error(exc, "read audit events", subject=stream) from exc
    # Read up to the stream's last sequence as it was when we started, not until the consumer's
    # pending count says zero: on a cluster an ephemeral consumer may sit on a replica that is
    # still catching up, and its count then stops short of the history (seen: 1,999 of 5,000).
    nothing = (info.num_pending or 0) == 0
    last = 0
    idle = 0
    # A scoped read is filtered: the stream's last message may lie outside it, so it ends when
    # its consumer has nothing more pending.
    drained = False
    try:
        while follow or (last < upto and not drained and not (nothing and last == 0)):
            try:
                msgs = await psub.fetch(BATCH, timeout=poll if follow else READ_FETCH_TIMEOUT)
            except (TimeoutError, nats.errors.TimeoutError):
                idle += 1
                if follow:
                    continue
                if idle >= READ_IDLE_FETCHES:
                    log.warning(
                        "audit read stopped short of the stream's end", read_up_to=last, stream_last=upto
                    )
                    break
                continue
            idle = 0
            for msg in msgs:
                seq = msg.metadata.sequence.stream
                if not follow and seq > upto:
                    return  # written after we started: not part of this read
                last = seq
                drained = name is not None and msg.metadata.num_pending == 0
                event = _decode(msg)
                if event is not None and event_matches(pattern, event):
                    yield event
    finally:
        with contextlib.suppress(Exception):
            await psub.unsubscribe()
        if name is not None:
            with contextlib.suppress(Exception):
                await conn.js.delete_consumer(stream, name)


async def _scoped_reader(
    conn: Connection, name: str, pattern: Target, config: ConsumerConfig
) -> JetStreamContext.PullSubscription:
    """A scoped identity's read: the one consumer named after its credential, filtered on ``pattern``.

    Its permissions (mesh/protocol/permissions.py) allow exactly that consumer, with a filter
    inside its scope in the API subject; an ephemeral consumer over the whole stream is refused.
    """
    stream = conn.ns.audit_stream
    subject = conn.ns.audit_filter("*", pattern)
    config.name = name
    config.filter_subject = subject
    with contextlib.suppress(Exception):  # one left by an earlier read that was cut short
        await conn.js.delete_consumer(stream, name)
    refusals = Refusals(conn)
    try:
        await refusals.guard(
            f"read the audit events of {pattern} (a scoped credential reads only inside its scope: "
            "name a pattern within it)",
            conn.js.add_consumer(stream, config),
            publishes_to=f"$JS.API.CONSUMER.CREATE.{stream}.{name}.{subject}",
        )
    finally:
        refusals.close()
    return await conn.js.pull_subscribe_bind(name, stream=stream)


async def subscribe_audit(
    conn: Connection,
    pattern: Target,
    *,
    durable: str,
    poll: float = 1.0,
) -> AsyncIterator[AuditEvent]:
    """Follow the audit stream through a durable consumer that resumes where it left off.

    Each event is acknowledged when the caller asks for the next one (or closes the iterator), so
    an event being handled when the process dies is delivered again (at least once). Events
    fetched but not yet handed out are returned to the server on close, in order.
    """
    if not _DURABLE.fullmatch(durable):
        raise ConfigError(f"invalid durable name {durable!r}: use 1-64 letters, digits, '_' or '-'")
    config = ConsumerConfig(
        durable_name=durable,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=30.0,
        max_ack_pending=1000,
    )
    try:
        psub = await conn.js.pull_subscribe(
            conn.ns.audit_wildcard, durable=durable, stream=conn.ns.audit_stream, config=config
        )
    except Exception as exc:
        raise translate_error(exc, "create the audit consumer", subject=durable) from exc
    try:
        while True:
            try:
                msgs = await psub.fetch(BATCH, timeout=poll)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            for index, msg in enumerate(msgs):
                event = _decode(msg)
                if event is not None and event_matches(pattern, event):
                    try:
                        yield event
                    except GeneratorExit:
                        await msg.ack()
                        for rest in msgs[index + 1 :]:
                            await rest.nak()
                        raise
                await msg.ack()
    finally:
        # Stop pulling, but keep the durable consumer: the next run resumes from its ack floor.
        with contextlib.suppress(Exception):
            await psub.unsubscribe()

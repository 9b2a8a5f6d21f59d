"""Writing audit events: acked JetStream publishes with ``Nats-Msg-Id``, linked into per-writer chains."""

from __future__ import annotations

import asyncio
import weakref

import nats.errors
import nats.js.errors
import structlog
from nats.js import JetStreamContext
from nats.js.api import PubAck

from mesh.protocol.actorsig import Signer, audit_subject_of
from mesh.protocol.auditchain import ChainState, Outcome, classify_publish, link_hash
from mesh.protocol.codec import encode
from mesh.protocol.models import AuditEvent
from mesh.protocol.subjects import Namespace
from mesh.runtime.aio import raise_if_cancelling
from mesh.transport.connection import translate_error

__all__ = ["AuditChain", "audit_subject_for", "publish_event"]

log = structlog.get_logger("mesh.audit")


class AuditChain:
    """One writer's hash chain, and the lock that keeps one of its publishes in flight at a time.

    One at a time because the stream must store a chain's events in chain order: with two in
    flight, a retried first one could land after the second.
    """

    def __init__(self) -> None:
        self.state = ChainState()
        self.lock = asyncio.Lock()


# A writer that brings no chain of its own gets one per JetStream context, i.e. per connection
# (an operator client, a controller). Agents bring their own: one chain per instance.
_by_context: weakref.WeakKeyDictionary[JetStreamContext, AuditChain] = weakref.WeakKeyDictionary()


def chain_for(js: JetStreamContext) -> AuditChain:
    chain = _by_context.get(js)
    if chain is None:
        chain = _by_context[js] = AuditChain()
    return chain


def audit_subject_for(ns: Namespace, event: AuditEvent) -> str:
    """Events about an instance go under its URI; commands under their (maybe wildcard) target."""
    return audit_subject_of(ns, event)


async def publish_event(
    js: JetStreamContext,
    ns: Namespace,
    event: AuditEvent,
    *,
    timeout: float = 5.0,
    attempts: int = 3,
    chain: AuditChain | None = None,
    unavailable_for: float | None = None,
    signer: Signer | None = None,
) -> PubAck:
    """Publish ``event``, linked into ``chain`` (default: the connection's), and wait for the ack.

    The event id is the ``Nats-Msg-Id``: a retry after a lost ack is dropped by the stream's
    duplicate window instead of being stored twice. The chain advances only when our bytes are
    known to be stored; when that is unknown it ends, and the next event starts a new chain.
    While the stream has no leader (503), it retries for ``unavailable_for`` seconds (default
    ``timeout * attempts``): a kill must not be in force and missing from the audit log because
    the cluster was electing a leader. With a ``signer`` (a writer holding a mesh token), the
    event is signed for its subject first (mesh/protocol/actorsig.py): one signature per event.
    """
    chain = chain if chain is not None else chain_for(js)
    subject = audit_subject_for(ns, event)
    if signer is not None:
        event = signer.sign(event, subject)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + (timeout * attempts if unavailable_for is None else unavailable_for)
    async with chain.lock:
        link = chain.state.next_link()
        payload = encode(event.model_copy(update={"chain": link}))
        headers = {"Nats-Msg-Id": event.id}
        outcome = Outcome.UNKNOWN
        last: BaseException | None = None
        unknown = 0  # attempts that timed out: our bytes may or may not be stored
        pause = 0.05
        try:
            while True:
                try:
                    ack = await js.publish(subject, payload, timeout=timeout, headers=headers)
                except (
                    TimeoutError,
                    nats.errors.TimeoutError,
                    nats.errors.ConnectionReconnectingError,
                ) as exc:
                    raise_if_cancelling()
                    last = exc
                    unknown += 1
                    if unknown >= attempts:
                        break
                    await asyncio.sleep(0.05 * (2 ** (unknown - 1)))
                    continue
                except (nats.js.errors.NoStreamResponseError, nats.errors.NoRespondersError) as exc:
                    # A 503: no stream leader right now (a cluster re-elects for 4-9 s after a node
                    # dies). Nothing was stored, so a retry is safe: retry until ``unavailable_for``.
                    raise_if_cancelling()
                    last = exc
                    if loop.time() + pause > deadline:
                        break
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, 0.5)
                    continue
                except Exception as exc:
                    raise translate_error(
                        exc, "write audit events", subject=subject, timeout=timeout
                    ) from exc
                outcome = classify_publish(attempt=unknown, duplicate=ack.duplicate, failed=False)
                return ack
        finally:
            chain.state.settle(link, link_hash(subject, payload), outcome)
            if outcome is Outcome.UNKNOWN:
                log.info("audit chain ended: publish outcome unknown", chain=link.id, seq=link.seq)
    assert last is not None
    raise translate_error(last, "write audit events", subject=subject, timeout=timeout) from last

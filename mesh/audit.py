"""Writing audit events: JetStream publish with ack and ``Nats-Msg-Id``, so retries never double-count."""

from __future__ import annotations

import asyncio

import nats.errors
from nats.js import JetStreamContext
from nats.js.api import PubAck

from mesh.aio import raise_if_cancelling
from mesh.codec import encode
from mesh.connection import translate_error
from mesh.models import AuditEvent
from mesh.subjects import Namespace
from mesh.target import AgentURI, Target, parse_agent_uri, parse_target

__all__ = ["audit_subject_for", "publish_event"]


def audit_subject_for(ns: Namespace, event: AuditEvent) -> str:
    """Events about an instance go under its URI; commands under their (maybe wildcard) target."""
    scope: Target | AgentURI
    if event.agent_uri:
        scope = parse_agent_uri(event.agent_uri)
    elif event.target:
        scope = parse_target(event.target)
    else:
        scope = Target("*", "*", "*")
    return ns.audit_subject(event.type.value, scope, event.instance)


async def publish_event(
    js: JetStreamContext,
    ns: Namespace,
    event: AuditEvent,
    *,
    timeout: float = 5.0,
    attempts: int = 3,
) -> PubAck:
    """Publish ``event`` to the audit stream and wait for the ack.

    The event id is the ``Nats-Msg-Id``: a retry after a lost ack is dropped by the stream's
    duplicate window instead of being stored twice.
    """
    subject = audit_subject_for(ns, event)
    payload = encode(event)
    headers = {"Nats-Msg-Id": event.id}
    last: BaseException | None = None
    for attempt in range(attempts):
        try:
            return await js.publish(subject, payload, timeout=timeout, headers=headers)
        except (TimeoutError, nats.errors.TimeoutError, nats.errors.ConnectionReconnectingError) as exc:
            raise_if_cancelling()
            last = exc
            await asyncio.sleep(0.05 * (2**attempt))
        except Exception as exc:
            raise translate_error(exc, "write audit events", subject=subject, timeout=timeout) from exc
    assert last is not None
    raise translate_error(last, "write audit events", subject=subject, timeout=timeout) from last

"""What the gateway says for an HTTP agent (pure): its answer's records and its audit events."""

from __future__ import annotations

from typing import Any

from gateway import acks
from gateway.keys import Identity
from gateway.kills import InForce
from mesh.protocol.models import AuditEvent, EventType, HaltAck

__all__ = ["halted_event", "lifecycle_event", "record_json"]


def record_json(held: InForce) -> dict[str, Any]:
    r = held.record
    return {
        "key": held.key,
        "target": r.target if r.instance is None else f"{r.target}#{r.instance}",
        "revision": held.revision,
        "command_id": r.command_id,
        "actor": r.actor,
        "reason": r.reason,
        "issued_at": r.issued_at.isoformat(),
        "grace": r.grace,
        "action": r.action,
    }


def lifecycle_event(ident: Identity, etype: EventType, data: dict[str, Any]) -> AuditEvent:
    """``started``, ``resumed``, ``stopped``, ``crashed``: as the SDK's, the actor naming the key."""
    return AuditEvent(
        type=etype,
        target=ident.agent_uri,
        agent_uri=ident.agent_uri,
        instance=ident.instance,
        actor=f"http:{ident.key_id}",
        data={"via": "http", "key_id": ident.key_id, **data},
    )


def halted_event(
    ident: Identity, held: InForce, status: str, metadata: dict[str, Any], checkpoint: Any, seq: int | None
) -> AuditEvent:
    """An HTTP agent's acknowledgement of one record (see :func:`gateway.acks.halted_event`)."""
    ack = HaltAck(
        status="paused" if status == "paused" else "killed",
        metadata={**metadata, "via": "http"},
        checkpoint=checkpoint,
        checkpoint_seq=seq,
        kill_key=held.key,
    )
    return acks.halted_event(ident, held, ack)

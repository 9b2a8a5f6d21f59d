"""Builders for what an instance says about itself: heartbeats and lifecycle/ack audit events."""

from __future__ import annotations

import hashlib
import os
import socket
from datetime import datetime
from typing import Any

from agent_sdk.config import SDK_VERSION, AgentConfig
from agent_sdk.killstate import InForce
from mesh.protocol.models import AuditEvent, EventType, HaltAck, Heartbeat, Status

__all__ = ["ack_event", "heartbeat", "lifecycle_event"]

_HOST = socket.gethostname()


def heartbeat(
    cfg: AgentConfig,
    *,
    status: Status,
    seq: int,
    started_at: datetime | None,
    metadata: dict[str, Any],
    kill_keys: list[str],
    usage: dict[str, float] | None = None,
) -> Heartbeat:
    return Heartbeat(
        agent_uri=str(cfg.uri),
        instance=cfg.instance,
        status=status,
        seq=seq,
        started_at=started_at,
        interval=cfg.heartbeat_interval,
        host=_HOST,
        pid=os.getpid(),
        sdk_version=SDK_VERSION,
        hard_kill=cfg.hard_kill,
        on_kill=cfg.on_kill,
        metadata=metadata,
        kill_keys=kill_keys,
        usage=usage or {},
    )


def ack_event(
    cfg: AgentConfig,
    etype: EventType,
    held: InForce,
    *,
    status: str,
    metadata: dict[str, Any],
    checkpoint: Any,
    checkpoint_seq: int | None,
    trace: dict[str, str] | None = None,
) -> AuditEvent:
    """A ``halted`` (or ``terminated``) event answering one kill record.

    The event id is derived from the command, revision and instance, so a retried ack is
    dropped by the stream's duplicate window instead of being counted twice.
    """
    rec = held.record
    seed = f"{etype.value}:{rec.command_id}:{held.revision}:{cfg.uri}:{cfg.instance}"
    ack = HaltAck(
        status="terminated" if status == "terminated" else "paused" if status == "paused" else "killed",
        metadata=metadata,
        checkpoint=checkpoint,
        checkpoint_seq=checkpoint_seq,
        kill_key=held.key,
        trace=trace,
    )
    data = ack.model_dump(mode="json")
    if trace is None:
        del data["trace"]  # untraced acks stay exactly as before
    return AuditEvent(
        id=hashlib.sha1(seed.encode()).hexdigest(),
        type=etype,
        target=rec.target,
        agent_uri=str(cfg.uri),
        instance=cfg.instance,
        actor=rec.actor,
        reason=rec.reason,
        command_id=rec.command_id,
        revision=held.revision,
        data=data,
    )


def lifecycle_event(
    cfg: AgentConfig, etype: EventType, *, reason: str | None = None, data: dict[str, Any] | None = None
) -> AuditEvent:
    return AuditEvent(
        type=etype,
        target=str(cfg.uri),
        agent_uri=str(cfg.uri),
        instance=cfg.instance,
        actor=cfg.settings.resolve_actor(),
        reason=reason,
        data=data or {},
    )

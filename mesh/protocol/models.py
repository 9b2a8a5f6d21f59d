"""Pydantic wire models: heartbeat, kill record, instance status, checkpoint, audit event, ack."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "LIVE_STATUSES",
    "WIRE_VERSION",
    "ActorSig",
    "AuditEvent",
    "ChainLink",
    "Checkpoint",
    "EventType",
    "HaltAck",
    "Heartbeat",
    "InstanceStatus",
    "KillRecord",
    "Status",
    "new_id",
    "utcnow",
]

WIRE_VERSION = 1


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    """A fresh id for commands and events (also the ``Nats-Msg-Id`` used for dedupe)."""
    return uuid.uuid4().hex


class Status(StrEnum):
    """The status of one agent instance (docs/kill-contract.md, "Statuses")."""

    ACTIVE = "active"
    PAUSED = "paused"
    KILLED = "killed"
    TERMINATED = "terminated"
    STALE = "stale"
    LOST = "lost"
    CRASHED = "crashed"
    STOPPED = "stopped"


#: Statuses of instances that are (as far as we know) still running and reachable by a kill.
LIVE_STATUSES = frozenset({Status.ACTIVE, Status.PAUSED, Status.STALE})


class EventType(StrEnum):
    """Audit event types."""

    KILL = "kill"
    RESUME = "resume"
    STARTED = "started"
    HALTED = "halted"
    RESUMED = "resumed"
    STOPPED = "stopped"
    CRASHED = "crashed"
    TERMINATED = "terminated"
    STALE = "stale"
    LOST = "lost"
    RECOVERED = "recovered"
    POLICY_VIOLATION = "policy_violation"
    #: The gateway refused an agent's calls (aggregated: ``data.count`` refusals in a few seconds).
    GATEWAY_REFUSED = "gateway_refused"


class _Wire(BaseModel):
    # Unknown fields are ignored so that newer peers can add fields without breaking older ones.
    # defer_build: a model builds its validator on first use, which keeps `mesh kill` start-up short.
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True, defer_build=True)


class KillRecord(_Wire):
    """The value of a control-bucket key: a kill in force. Deleting the key resumes."""

    v: int = WIRE_VERSION
    command_id: str = Field(default_factory=new_id, min_length=1, max_length=64)
    target: str = Field(max_length=512)
    instance: str | None = Field(default=None, max_length=64)
    actor: str = Field(default="unknown", max_length=256)
    reason: str | None = Field(default=None, max_length=4096)
    grace: float = Field(default=10.0, ge=0, le=86400)
    #: Overrides the instance's own ``on_kill``: ``None`` keeps it.
    action: Literal["raise", "pause"] | None = None
    issued_at: datetime = Field(default_factory=utcnow)
    #: W3C trace context of the kill's span (``agent-mesh[otel]``, mesh/runtime/tracing.py), if traced.
    trace: dict[str, str] | None = Field(default=None, max_length=8)


class Heartbeat(_Wire):
    """Published by every instance on ``mesh.hb.ORG.ENV.NAME.INSTANCE`` (core NATS)."""

    v: int = WIRE_VERSION
    agent_uri: str = Field(max_length=256)
    instance: str = Field(max_length=64)
    status: Status = Status.ACTIVE
    seq: int = Field(default=0, ge=0)
    time: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    interval: float = Field(default=2.0, gt=0, le=3600)
    host: str = Field(default="", max_length=256)
    pid: int = 0
    sdk_version: str = Field(default="", max_length=64)
    hard_kill: bool = True
    on_kill: Literal["raise", "pause"] = "raise"
    metadata: dict[str, Any] = Field(default_factory=dict)
    #: Control keys of the kill records this instance is currently under.
    kill_keys: list[str] = Field(default_factory=list)
    #: Usage counters (monotonic totals), for policies.
    usage: dict[str, float] = Field(default_factory=dict)


class InstanceStatus(_Wire):
    """The controller's record of one instance, in the instances bucket."""

    v: int = WIRE_VERSION
    agent_uri: str
    instance: str
    status: Status
    first_seen: datetime
    last_seen: datetime
    last_change: datetime
    #: Why the status last changed (for example "reported paused", "no heartbeat for 31.0s").
    cause: str | None = None
    host: str = ""
    pid: int = 0
    sdk_version: str = ""
    interval: float = 2.0
    hard_kill: bool = True
    on_kill: Literal["raise", "pause"] = "raise"
    metadata: dict[str, Any] = Field(default_factory=dict)
    kill_keys: list[str] = Field(default_factory=list)
    usage: dict[str, float] = Field(default_factory=dict)


class Checkpoint(_Wire):
    """An instance's saved state, in the checkpoints bucket under its instance key."""

    v: int = WIRE_VERSION
    agent_uri: str
    instance: str
    seq: int = Field(ge=0)
    time: datetime = Field(default_factory=utcnow)
    state: Any = None
    #: The instance's usage counters (monotonic totals), restored with the same instance id.
    usage: dict[str, float] = Field(default_factory=dict)


class ChainLink(_Wire):
    """An audit event's place in its writer's hash chain (see mesh/protocol/auditchain.py)."""

    #: The chain: one per writer (agent instance, operator or controller connection) and lifetime.
    id: str = Field(min_length=1, max_length=64)
    #: 1 for a chain's first event, then +1 for each event the writer got stored.
    seq: int = Field(ge=1)
    #: The hash of the chain's previous stored event; None exactly when ``seq`` is 1.
    prev: str | None = Field(default=None, max_length=128)


class ActorSig(_Wire):
    """A credential holder's Ed25519 signature over an audit event (see mesh/protocol/actorsig.py)."""

    #: The signing scheme, so that a later one can be told apart.
    v: int = 1
    #: The credential whose key signed (its public key is in the identities bucket, ``pub.<id>``).
    cred: str = Field(pattern=r"^[0-9a-f]{16}$")
    #: The signature, base64url without padding (64 bytes).
    sig: str = Field(min_length=1, max_length=128)


class AuditEvent(_Wire):
    """One entry of the append-only audit stream."""

    v: int = WIRE_VERSION
    id: str = Field(default_factory=new_id, min_length=1, max_length=64)
    time: datetime = Field(default_factory=utcnow)
    type: EventType
    target: str | None = None
    agent_uri: str | None = None
    instance: str | None = None
    actor: str | None = None
    reason: str | None = None
    command_id: str | None = None
    revision: int | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    #: Set by ``publish_event``; absent on events written before chaining (reported as unchained).
    chain: ChainLink | None = None
    #: Set by a writer holding a credential of its own (nats-identity.conf); absent otherwise, and
    #: on events written before signing: such an event's actor is only claimed.
    sig: ActorSig | None = None


class HaltAck(_Wire):
    """The ``data`` of a ``halted`` audit event: what the instance had done when it stopped."""

    status: Literal["paused", "killed", "terminated"]
    metadata: dict[str, Any] = Field(default_factory=dict)
    checkpoint: Any = None
    checkpoint_seq: int | None = None
    kill_key: str | None = None
    #: W3C trace context of the instance's halt span, a child of the record's (mesh/runtime/tracing.py).
    trace: dict[str, str] | None = Field(default=None, max_length=8)

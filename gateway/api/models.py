"""Request and response bodies of /api/v1 (pydantic): what the OpenAPI document is generated from.

Responses that the CLI also prints with ``--json`` are produced by the same serializers
(``KillReport.to_json``, ``mesh.protocol.shapes``); the models here only describe them, and every test
response is validated against that description, so the two cannot drift apart unnoticed.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Ack",
    "AgentStatusOut",
    "AxmeHeartbeatOut",
    "CheckpointIn",
    "CheckpointOut",
    "ControlOut",
    "ErrorOut",
    "EventOut",
    "HaltedIn",
    "HeartbeatIn",
    "InstanceOut",
    "KillIn",
    "KillReportOut",
    "PolicyOut",
    "RecordOut",
    "ResumeIn",
    "ResumeReportOut",
    "UsageOut",
]

Counters = dict[str, float]


class _In(BaseModel):
    # Unknown fields are refused: a typo ("metdata") must be a 422 naming it, not silently dropped.
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- agent routes ---------------------------------------------------------------------------------
class HeartbeatIn(_In):
    """An HTTP agent's heartbeat; every field optional (an empty body is a heartbeat too)."""

    #: The instance id, if the key does not fix one (or send ``X-Mesh-Instance``).
    instance: str | None = Field(default=None, max_length=64)
    #: What the agent says it is doing; default: ``paused`` once it acknowledged a kill, else ``active``.
    status: Literal["active", "paused", "stopped", "crashed"] | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    #: Usage counters, monotonic totals (policies sum them), like the SDK's ``usage``.
    usage: dict[str, float] = Field(default_factory=dict)
    #: Seconds until the next heartbeat: the controller calls the instance stale after 3 missed.
    interval: float = Field(default=10.0, gt=0, le=3600)
    #: What a kill asks of this agent unless the kill record says otherwise.
    on_kill: Literal["raise", "pause"] = "pause"


class RecordOut(_Out):
    """A kill record in force over the instance."""

    key: str
    target: str
    revision: int
    command_id: str
    actor: str
    reason: str | None
    issued_at: str
    grace: float
    action: Literal["raise", "pause"] | None


class ControlOut(_Out):
    """The answer to a heartbeat or a control poll: may this instance act?"""

    agent_uri: str
    instance: str
    killed: bool
    #: What to do when killed: ``pause`` (wait for resume, keep state) or ``raise`` (stop for good).
    action: Literal["raise", "pause"] | None
    #: The oldest record in force (the one the answer is about); null when not killed.
    record: RecordOut | None
    records: list[RecordOut]
    #: True when the gateway cannot tell (no contact with NATS): act as killed.
    fail_closed: bool = False
    #: The instance acknowledged every record in force (``POST /api/v1/halted``).
    acknowledged: bool = False


class AxmeHeartbeatOut(ControlOut):
    """``POST /v1/mesh/heartbeat``: the same answer, with AXME's ``ok``, address id and health."""

    ok: Literal[True]
    address_id: str
    health_status: Literal["healthy", "killed"]


class CheckpointIn(_In):
    instance: str | None = Field(default=None, max_length=64)
    state: Any = None
    usage: dict[str, float] = Field(default_factory=dict)


class CheckpointOut(_Out):
    agent_uri: str
    instance: str
    seq: int | None
    time: str | None
    state: Any = None
    usage: Counters = Field(default_factory=dict)
    revision: int | None = None


class HaltedIn(_In):
    """The acknowledgement of a kill: what the agent had done when it stopped."""

    instance: str | None = Field(default=None, max_length=64)
    status: Literal["paused", "killed"] | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    #: Saved as the instance's checkpoint first, then sent in the acknowledgement.
    checkpoint: Any = None


class Ack(_Out):
    agent_uri: str
    instance: str
    acknowledged: list[str]
    status: str
    checkpoint_seq: int | None = None


# -- operator routes: the CLI's --json shapes -----------------------------------------------------
class KillIn(_In):
    target: str = Field(max_length=512)
    instance: str | None = Field(default=None, max_length=64)
    reason: str | None = Field(default=None, max_length=4096)
    grace: float = Field(default=10.0, ge=0, le=86400)
    #: Seconds to collect acknowledgements, like ``mesh kill --wait``.
    wait: float = Field(default=2.0, ge=0)
    action: Literal["raise", "pause"] | None = None


class ResumeIn(_In):
    target: str = Field(max_length=512)
    instance: str | None = Field(default=None, max_length=64)
    reason: str | None = Field(default=None, max_length=4096)
    wait: float = Field(default=2.0, ge=0)


class AckRowOut(_Out):
    agent_uri: str
    instance: str
    status: str
    metadata: dict[str, Any]
    checkpoint: Any = None


class SilentOut(_Out):
    agent_uri: str
    instance: str
    status: str
    last_seen: str | None


class HeldOut(_Out):
    key: str
    target: str
    revision: int
    actor: str
    reason: str | None
    command_id: str
    issued_at: str


class KillReportOut(_Out):
    target: str
    command_id: str
    instances: list[AckRowOut]
    acked: int
    missing: list[SilentOut]


class ResumeReportOut(KillReportOut):
    still_held_by: list[HeldOut]


class InstanceOut(_Out):
    agent_uri: str
    instance: str
    status: str
    last_seen: str
    metadata: dict[str, Any]


class StatusInstanceOut(_Out):
    instance: str
    status: str
    last_seen: str
    metadata: dict[str, Any]
    checkpoint: Any = None


class AgentStatusOut(_Out):
    agent_uri: str
    records: list[HeldOut]
    instances: list[StatusInstanceOut]


class EventOut(_Out):
    id: str
    time: str
    type: str
    target: str | None
    agent_uri: str | None
    instance: str | None
    actor: str | None
    reason: str | None
    command_id: str | None
    data: dict[str, Any]


class PolicyOut(_Out):
    name: str
    target: str
    limits: list[str]
    action: str
    dry_run: bool
    on_unreachable: str
    grace: float
    created_by: str
    created_at: str


class UsageOut(_Out):
    pattern: str
    since: str | None
    agents: list[dict[str, Any]]


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")

    code: str
    message: str
    field: str | None = None
    right: str | None = None
    part: str | None = None


class ErrorOut(_Out):
    error: ErrorDetail

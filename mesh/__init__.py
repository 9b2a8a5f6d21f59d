"""agent-mesh: the protocol core and the operator API of a kill switch for fleets of AI agents.

``mesh`` holds target parsing, subject and key naming, wire models, settings, JetStream
provisioning, the embedded nats-server launcher and the operator API. It imports nothing
from ``agent_sdk``, ``controller`` or ``cli``.
"""

from __future__ import annotations

from mesh.errors import (
    AgentKilled,
    AuthenticationFailed,
    ConfigError,
    ConnectionFailed,
    InvalidCheckpoint,
    InvalidTarget,
    MalformedMessage,
    MeshError,
    MeshTimeout,
    NotFound,
    NotProvisioned,
    PayloadTooLarge,
    PermissionDenied,
    PortInUse,
    ProvisioningConflict,
    ServerError,
)
from mesh.models import (
    AuditEvent,
    Checkpoint,
    EventType,
    HaltAck,
    Heartbeat,
    InstanceStatus,
    KillRecord,
    Status,
)
from mesh.operator import AsyncMesh
from mesh.policy import Limit, Policy
from mesh.reports import AckRow, AgentStatus, HeldBy, KillReport, ResumeReport, SilentInstance
from mesh.settings import Settings
from mesh.subjects import Namespace
from mesh.sync import Mesh, get, kill, list_instances, resume, status
from mesh.target import AgentURI, Target, parse_agent_uri, parse_target
from mesh.usage import AgentUsage, InstanceUsageRow, UsageReport

__version__ = "0.1.0"

__all__ = [
    "AckRow",
    "AgentKilled",
    "AgentStatus",
    "AgentURI",
    "AgentUsage",
    "AsyncMesh",
    "AuditEvent",
    "AuthenticationFailed",
    "Checkpoint",
    "ConfigError",
    "ConnectionFailed",
    "EventType",
    "HaltAck",
    "Heartbeat",
    "HeldBy",
    "InstanceStatus",
    "InstanceUsageRow",
    "InvalidCheckpoint",
    "InvalidTarget",
    "KillRecord",
    "KillReport",
    "Limit",
    "MalformedMessage",
    "Mesh",
    "MeshError",
    "MeshTimeout",
    "Namespace",
    "NotFound",
    "NotProvisioned",
    "PayloadTooLarge",
    "PermissionDenied",
    "Policy",
    "PortInUse",
    "ProvisioningConflict",
    "ResumeReport",
    "ServerError",
    "Settings",
    "SilentInstance",
    "Status",
    "Target",
    "UsageReport",
    "__version__",
    "get",
    "kill",
    "list_instances",
    "parse_agent_uri",
    "parse_target",
    "resume",
    "status",
]

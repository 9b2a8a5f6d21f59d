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
from mesh.settings import Settings
from mesh.subjects import Namespace
from mesh.target import AgentURI, Target, parse_agent_uri, parse_target

__version__ = "0.1.0"

__all__ = [
    "AgentKilled",
    "AgentURI",
    "AuditEvent",
    "AuthenticationFailed",
    "Checkpoint",
    "ConfigError",
    "ConnectionFailed",
    "EventType",
    "HaltAck",
    "Heartbeat",
    "InstanceStatus",
    "InvalidCheckpoint",
    "InvalidTarget",
    "KillRecord",
    "MalformedMessage",
    "MeshError",
    "MeshTimeout",
    "Namespace",
    "NotFound",
    "NotProvisioned",
    "PayloadTooLarge",
    "PermissionDenied",
    "PortInUse",
    "ProvisioningConflict",
    "ServerError",
    "Settings",
    "Status",
    "Target",
    "__version__",
    "parse_agent_uri",
    "parse_target",
]

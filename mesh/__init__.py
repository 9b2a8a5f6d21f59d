"""agent-mesh: the protocol core and the operator API of a kill switch for fleets of AI agents.

``mesh`` is layered: ``mesh.protocol`` (targets, subjects, wire models, the kill, policy and quota
logic; pure), ``mesh.runtime`` (settings, logging, asyncio helpers), ``mesh.transport`` (the NATS
boundary, the only layer that imports nats-py) and ``mesh.client`` (the operator API). This module
is the curated public face; the operator API, which does I/O, is imported on first use, so that
``import mesh.protocol.target`` loads neither nats-py nor anyio. It imports nothing from
``agent_sdk``, ``controller`` or ``cli``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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
from mesh.protocol.models import (
    AuditEvent,
    Checkpoint,
    EventType,
    HaltAck,
    Heartbeat,
    InstanceStatus,
    KillRecord,
    Status,
)
from mesh.protocol.policy import Limit, Policy
from mesh.protocol.reports import AckRow, AgentStatus, HeldBy, KillReport, ResumeReport, SilentInstance
from mesh.protocol.subjects import Namespace
from mesh.protocol.target import AgentURI, Target, parse_agent_uri, parse_target
from mesh.protocol.usage import AgentUsage, InstanceUsageRow, UsageReport
from mesh.runtime.settings import Settings

if TYPE_CHECKING:
    from mesh.client.operator import AsyncMesh
    from mesh.client.sync import Mesh, get, kill, list_instances, resume, status

__version__ = "0.1.0"

#: Public names that do I/O -> the module that defines them, imported on first use.
_LAZY = {
    "AsyncMesh": "mesh.client.operator",
    **{name: "mesh.client.sync" for name in ("Mesh", "get", "kill", "list_instances", "resume", "status")},
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mesh' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this hook
    return value


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

"""The public names of ``mesh`` and ``agent_sdk``: a change here is an API change, made on purpose."""

from __future__ import annotations

import agent_sdk
import mesh

MESH_API = [
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

AGENT_SDK_API = [
    "TERMINATED_EXIT_CODE",
    "Agent",
    "AgentKilled",
    "AgentKilledException",
    "AsyncAgent",
    "InvalidCheckpoint",
    "__version__",
]


def test_mesh_public_api() -> None:
    assert sorted(mesh.__all__) == sorted(MESH_API)
    for name in mesh.__all__:
        assert hasattr(mesh, name), name


def test_agent_sdk_public_api() -> None:
    assert sorted(agent_sdk.__all__) == sorted(AGENT_SDK_API)
    for name in agent_sdk.__all__:
        assert hasattr(agent_sdk, name), name


def test_reference_alias() -> None:
    assert agent_sdk.AgentKilledException is agent_sdk.AgentKilled is mesh.AgentKilled


def test_operator_api_signatures() -> None:
    import inspect

    kill = inspect.signature(mesh.AsyncMesh.kill)
    assert list(kill.parameters) == [
        "self", "target", "instance", "reason", "grace", "wait", "action", "actor"
    ]  # fmt: skip
    assert kill.parameters["grace"].default == 10.0 and kill.parameters["wait"].default == 2.0
    resume = inspect.signature(mesh.Mesh.resume)
    assert list(resume.parameters) == ["self", "target", "instance", "reason", "wait", "actor"]
    # ``actor`` is keyword-only and optional: it names who acts in the audit log (default: settings).
    assert resume.parameters["actor"].kind is inspect.Parameter.KEYWORD_ONLY
    assert resume.parameters["actor"].default is None

"""The agent-mesh error hierarchy: every error we raise derives from ``MeshError``.

::

    MeshError
    ├── InvalidTarget (ValueError)          a URI, target or instance id that does not parse
    ├── MalformedMessage (ValueError)       bytes on the wire that are not the model they claim
    │   └── PayloadTooLarge                 a message over the size limit
    ├── InvalidCheckpoint (ValueError)      checkpoint state that is not JSON or too large
    ├── ConfigError (ValueError)            a bad setting (env var, flag, config file)
    ├── ConnectionFailed (ConnectionError)  NATS could not be reached
    ├── AuthenticationFailed (PermissionError)  NATS refused the credentials
    ├── PermissionDenied (PermissionError)  NATS refused an operation to this user
    ├── MeshTimeout (TimeoutError)          NATS did not answer in time
    ├── NotProvisioned (LookupError)        a bucket or stream is missing
    ├── ProvisioningConflict                an existing bucket/stream has a different config
    ├── RevisionConflict                    a compare-and-set lost: the key changed first
    ├── NotFound (LookupError)              an agent or instance that the mesh does not know
    ├── AuditChainBroken                    the audit stream is not what its writers wrote
    ├── ServerError (RuntimeError)          the embedded nats-server failed
    │   └── PortInUse                       its port is taken
    └── AgentKilled                         raised in an agent at a safe point when killed

Each class carries the data that explains it (``size``/``max_payload``, ``url``,
``part``...) and a one-line message that names the problem and, where there is one, the fix.
nats-py exceptions are translated at the boundary with ``raise ... from``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AgentKilled",
    "AuditChainBroken",
    "AuthenticationFailed",
    "ConfigError",
    "ConnectionFailed",
    "InvalidCheckpoint",
    "InvalidTarget",
    "MalformedMessage",
    "MeshError",
    "MeshTimeout",
    "NotFound",
    "NotProvisioned",
    "PayloadTooLarge",
    "PermissionDenied",
    "PortInUse",
    "ProvisioningConflict",
    "RevisionConflict",
    "ServerError",
]


class MeshError(Exception):
    """Root of every error agent-mesh raises."""


class InvalidTarget(MeshError, ValueError):
    """A URI, target pattern or instance id that does not parse; ``part`` names the bad bit."""

    def __init__(self, value: str, part: str, reason: str) -> None:
        self.value = value
        self.part = part
        self.reason = reason
        super().__init__(f"invalid target {value!r}: {part}: {reason}")


class MalformedMessage(MeshError, ValueError):
    """Bytes that do not decode into the wire model ``kind``."""

    def __init__(self, kind: str, reason: str, size: int) -> None:
        self.kind = kind
        self.reason = reason
        self.size = size
        super().__init__(f"malformed {kind} message ({size} bytes): {reason}")


class PayloadTooLarge(MalformedMessage):
    """A message larger than ``max_payload`` bytes."""

    def __init__(self, kind: str, size: int, max_payload: int) -> None:
        self.max_payload = max_payload
        super().__init__(kind, f"larger than the {max_payload}-byte limit", size)


class InvalidCheckpoint(MeshError, ValueError):
    """Checkpoint state that is not JSON-serialisable or is too large to store."""

    def __init__(self, reason: str, size: int | None = None, max_size: int | None = None) -> None:
        self.reason = reason
        self.size = size
        self.max_size = max_size
        super().__init__(f"invalid checkpoint: {reason}")


class ConfigError(MeshError, ValueError):
    """A setting (environment variable, flag, file) that is missing or wrong."""


class ConnectionFailed(MeshError, ConnectionError):
    """NATS could not be reached at ``url``."""

    def __init__(self, url: str, detail: str = "") -> None:
        self.url = url
        self.detail = detail
        extra = f" ({detail})" if detail else ""
        super().__init__(f"cannot reach NATS at {url}{extra}: start one with `mesh up`, or set NATS_URL")


class AuthenticationFailed(MeshError, PermissionError):
    """NATS refused the credentials offered for ``url``."""

    def __init__(self, url: str, detail: str = "") -> None:
        self.url = url
        self.detail = detail
        extra = f" ({detail})" if detail else ""
        super().__init__(
            f"NATS at {url} refused the credentials{extra}: "
            "check NATS_USER/NATS_PASSWORD, NATS_TOKEN or NATS_CREDS"
        )


class PermissionDenied(MeshError, PermissionError):
    """NATS refused ``operation`` on ``subject`` to the connected user."""

    def __init__(self, operation: str, subject: str = "", detail: str = "") -> None:
        self.operation = operation
        self.subject = subject
        self.detail = detail
        super().__init__(f"permission denied: this user may not {operation}")


class MeshTimeout(MeshError, TimeoutError):
    """NATS did not answer ``operation`` within ``timeout`` seconds."""

    def __init__(self, operation: str, timeout: float) -> None:
        self.operation = operation
        self.timeout = timeout
        super().__init__(f"timed out after {timeout:g}s: {operation}")


class NotProvisioned(MeshError, LookupError):
    """A JetStream bucket or stream the mesh needs does not exist."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"JetStream {name} does not exist: run `mesh up`, or `mesh init` against your server"
        )


class ProvisioningConflict(MeshError):
    """An existing bucket or stream whose config differs from the one the mesh needs."""

    def __init__(self, name: str, differences: dict[str, tuple[Any, Any]]) -> None:
        self.name = name
        self.differences = differences
        diff = ", ".join(f"{k}: have {have!r}, want {want!r}" for k, (have, want) in differences.items())
        super().__init__(
            f"JetStream {name} exists with a different config ({diff}); "
            "not overwritten: fix it by hand or use another MESH_PREFIX"
        )


class RevisionConflict(MeshError):
    """A compare-and-set write lost: ``key`` is no longer at revision ``expected`` (0: it was empty)."""

    def __init__(self, key: str, expected: int) -> None:
        self.key = key
        self.expected = expected
        held = "already holds a value" if expected == 0 else f"is no longer at revision {expected}"
        super().__init__(f"{key} {held}: somebody else wrote it first")


class NotFound(MeshError, LookupError):
    """An agent or instance the mesh has no record of."""


class AuditChainBroken(MeshError):
    """``mesh audit verify`` found an edited, removed, reordered or inserted audit event.

    ``stream_seq`` names the message at fault, ``kind`` what happened to it, ``chain`` the writer's
    chain (None for a hole in the stream itself).
    """

    def __init__(self, line: str, *, kind: str, stream_seq: int, chain: str | None = None) -> None:
        self.kind = kind
        self.stream_seq = stream_seq
        self.chain = chain
        super().__init__(line)


class ServerError(MeshError, RuntimeError):
    """The embedded nats-server could not start or stopped unexpectedly."""


class PortInUse(ServerError):
    """The port the embedded nats-server was asked to use is taken."""

    def __init__(self, port: int) -> None:
        self.port = port
        super().__init__(f"port {port} is already in use (another `mesh up`?): stop it or pass --port")


class AgentKilled(MeshError):
    """Raised at an agent's safe point when a kill record in force matches it.

    ``record`` is the :class:`mesh.protocol.models.KillRecord` that stopped it (or ``None`` when the
    instance halted itself, for example with ``fail_closed_after``).
    """

    def __init__(self, record: Any = None, reason: str | None = None) -> None:
        self.record = record
        why = reason or getattr(record, "reason", None) or "no reason given"
        who = getattr(record, "actor", None)
        target = getattr(record, "target", None)
        by = f" by {who}" if who else ""
        on = f" ({target})" if target else ""
        super().__init__(f"agent killed{by}{on}: {why}")

"""Validated configuration of one agent instance, shared by Agent and AsyncAgent."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from mesh.errors import ConfigError
from mesh.protocol.target import AgentURI, default_instance_id, parse_agent_uri, validate_instance
from mesh.runtime.settings import Settings

__all__ = ["SDK_VERSION", "TERMINATED_EXIT_CODE", "AgentConfig", "OnKill"]

SDK_VERSION = "0.1.0"

#: Exit status of a process that the SDK ended itself after a kill's grace period ran out
#: without the agent reaching a safe point (rule 5, escalation). 137 would be confused with
#: SIGKILL or the OOM killer; 86 is ours alone ("86'd": thrown out).
TERMINATED_EXIT_CODE = 86

OnKill = Literal["raise", "pause"]


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """Everything an instance needs to know before it connects."""

    uri: AgentURI
    instance: str
    settings: Settings
    heartbeat_interval: float = 2.0
    on_kill: OnKill = "raise"
    hard_kill: bool = True
    fail_closed_after: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    #: How often the kill records are re-read as a health check of the push path.
    resync_interval: float = 6.0
    #: How long a spend waits for a quota lease with no controller answering (None: until one does).
    quota_timeout: float | None = None

    @classmethod
    def build(
        cls,
        uri: str,
        *,
        instance: str | None,
        servers: str | list[str] | None,
        settings: Settings | None,
        heartbeat_interval: float,
        on_kill: str,
        hard_kill: bool,
        fail_closed_after: float | None,
        metadata: dict[str, Any] | None,
        resync_interval: float | None,
        quota_timeout: float | None = None,
    ) -> AgentConfig:
        if on_kill not in ("raise", "pause"):
            raise ConfigError(f"on_kill must be 'raise' or 'pause', not {on_kill!r}")
        if heartbeat_interval <= 0:
            raise ConfigError(f"heartbeat_interval must be > 0, not {heartbeat_interval!r}")
        if fail_closed_after is not None and fail_closed_after <= 0:
            raise ConfigError(f"fail_closed_after must be > 0 seconds, not {fail_closed_after!r}")
        if quota_timeout is not None and quota_timeout <= 0:
            raise ConfigError(f"quota_timeout must be > 0 seconds, not {quota_timeout!r}")
        if isinstance(servers, list):
            servers = ",".join(servers)
        if settings is None:
            settings = Settings.from_env(nats_url=servers)
        elif servers:
            settings = settings.model_copy(update={"nats_url": servers})
        return cls(
            uri=parse_agent_uri(uri),
            instance=validate_instance(instance) if instance is not None else default_instance_id(),
            settings=settings,
            heartbeat_interval=heartbeat_interval,
            on_kill="pause" if on_kill == "pause" else "raise",
            hard_kill=hard_kill,
            fail_closed_after=fail_closed_after,
            metadata=dict(metadata or {}),
            resync_interval=resync_interval or max(1.0, 3 * heartbeat_interval),
            quota_timeout=quota_timeout,
        )

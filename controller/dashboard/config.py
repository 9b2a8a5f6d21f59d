"""Dashboard settings: where it listens, the operator token and the default dashboard user."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from mesh.errors import ConfigError
from mesh.runtime.settings import Settings

__all__ = ["DEFAULT_BIND", "DEFAULT_PORT", "DashboardConfig", "is_loopback"]

DEFAULT_PORT = 8600
DEFAULT_BIND = "127.0.0.1"
#: Shortest operator token accepted: anything shorter is guessable.
MIN_TOKEN_LENGTH = 8


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) only accepts connections from this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class DashboardConfig:
    """Everything the dashboard needs; :meth:`from_env` reads ``MESH_DASHBOARD_*`` and ``NATS_*``.

    ========================  ==========================================================
    ``MESH_DASHBOARD_TOKEN``  operator token for kill/resume; unset means read-only
    ``MESH_DASHBOARD_USER``   dashboard user recorded as ``dashboard:<user>`` in the audit
    ========================  ==========================================================
    """

    settings: Settings
    port: int = DEFAULT_PORT
    bind: str = DEFAULT_BIND
    token: str | None = field(default=None, repr=False)
    user: str | None = None
    #: How many past audit events a freshly loaded page shows.
    audit_backlog: int = 200
    #: Seconds between health checks of the watch loops.
    health_interval: float = 5.0
    #: Seconds an operator command waits for acknowledgements (the report's ``wait``).
    command_wait: float = 2.0

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"invalid dashboard port {self.port}: use 1-65535 (0 picks a free one)")
        if self.token is not None and len(self.token) < MIN_TOKEN_LENGTH:
            raise ConfigError(
                f"MESH_DASHBOARD_TOKEN is too short: use at least {MIN_TOKEN_LENGTH} characters "
                "(for example `openssl rand -hex 16`)"
            )

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        settings: Settings | None = None,
        port: int = DEFAULT_PORT,
        bind: str = DEFAULT_BIND,
    ) -> DashboardConfig:
        env = os.environ if env is None else env
        return cls(
            settings=settings or Settings.from_env(env),
            port=port,
            bind=bind,
            token=env.get("MESH_DASHBOARD_TOKEN") or None,
            user=env.get("MESH_DASHBOARD_USER") or None,
        )

    @property
    def writable(self) -> bool:
        """Whether mutating actions are possible at all (an operator token is configured)."""
        return self.token is not None

    @property
    def loopback(self) -> bool:
        return is_loopback(self.bind)

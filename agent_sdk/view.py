"""What Agent and AsyncAgent share: the read-only view of an instance, and its usage counters."""

from __future__ import annotations

from typing import Any

from agent_sdk.config import AgentConfig
from agent_sdk.core import AgentCore
from mesh.protocol.models import KillRecord, Status

__all__ = ["InstanceView"]


class InstanceView:
    """Properties that read the core's state; neither waits on anything."""

    config: AgentConfig
    _core: AgentCore
    _restored: Any

    @property
    def uri(self) -> str:
        return str(self.config.uri)

    @property
    def instance(self) -> str:
        return self.config.instance

    @property
    def killed(self) -> bool:
        """Whether a kill record in force matches this instance (or it halted itself)."""
        return self._core.killed_evt.is_set()

    @property
    def kill_record(self) -> KillRecord | None:
        """The oldest kill record in force (who, why, when), or None."""
        held = self._core.in_force()
        return held[0].record if held else None

    @property
    def status(self) -> Status:
        return self._core.status

    def restore(self) -> Any:
        """The last checkpoint state saved under this instance id (read at start), or None."""
        return self._restored

    def record(self, **counters: float) -> None:
        """Add to this instance's usage counters, e.g. ``record(emails=100, cost_usd=0.42)``.

        Totals are monotonic, ride on every heartbeat (policies act on them) and are stored
        with the checkpoint, so a restart with the same instance id continues from them. Never
        waits on the network; a negative or non-numeric value raises ConfigError (a ValueError).
        Not a safe point.
        """
        self._core.usage.add(counters)

    @property
    def usage(self) -> dict[str, float]:
        """This instance's usage totals (restored at start when the instance id is stable)."""
        return self._core.usage.snapshot()[1]

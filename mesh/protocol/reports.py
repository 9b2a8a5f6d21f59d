"""What kill, resume and status return: typed reports with stable ``to_json()`` shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mesh.protocol.models import Checkpoint, InstanceStatus, KillRecord

__all__ = [
    "AckRow",
    "AgentStatus",
    "HeldBy",
    "KillReport",
    "ResumeReport",
    "SilentInstance",
    "sum_metadata",
]


class _Report(BaseModel):
    model_config = ConfigDict(frozen=True, defer_build=True)


class AckRow(_Report):
    """One instance that acknowledged a command: what it reported when it halted or resumed."""

    agent_uri: str
    instance: str
    status: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    checkpoint: Any = None
    time: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "agent_uri": self.agent_uri,
            "instance": self.instance,
            "status": self.status,
            "metadata": self.metadata,
            "checkpoint": self.checkpoint,
        }


class SilentInstance(_Report):
    """An instance the controller knew as live and matching that did not answer within ``wait``."""

    agent_uri: str
    instance: str
    status: str
    last_seen: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "agent_uri": self.agent_uri,
            "instance": self.instance,
            "status": self.status,
            "last_seen": self.last_seen.isoformat() if self.last_seen else None,
        }


class HeldBy(_Report):
    """A kill record in force: its control key, the target it covers, its revision and content."""

    key: str
    target: str
    revision: int
    record: KillRecord

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "target": self.target,
            "revision": self.revision,
            "actor": self.record.actor,
            "reason": self.record.reason,
            "command_id": self.record.command_id,
            "issued_at": self.record.issued_at.isoformat(),
        }


#: Metadata that says *where* an instance is rather than *how much* it did: summing it across
#: instances means nothing, so the totals line leaves it out.
POSITION_KEYS = frozenset({"batch", "step", "page", "index", "offset", "cursor", "position", "seq", "id"})


def sum_metadata(rows: list[AckRow]) -> dict[str, float]:
    """Totals of the numeric metadata fields across rows, in first-seen order.

    Booleans and position fields (:data:`POSITION_KEYS`, e.g. ``batch``) are left out.
    """
    totals: dict[str, float] = {}
    for row in rows:
        for name, value in row.metadata.items():
            if name.lower() in POSITION_KEYS:
                continue
            if isinstance(value, int | float) and not isinstance(value, bool):
                totals[name] = totals.get(name, 0) + value
    return totals


class _CommandReport(_Report):
    target: str
    command_id: str
    revision: int
    actor: str
    reason: str | None = None
    issued_at: datetime
    instances: list[AckRow] = Field(default_factory=list)
    missing: list[SilentInstance] = Field(default_factory=list)
    expected: int = 0

    @property
    def acked(self) -> int:
        return len(self.instances)

    @property
    def complete(self) -> bool:
        """Every instance expected to answer did so."""
        return not self.missing

    @property
    def totals(self) -> dict[str, float]:
        return sum_metadata(self.instances)


class KillReport(_CommandReport):
    """The result of ``kill``: acknowledging instances, silent ones, and totals."""

    #: Expected instances already halted by another record, which had nothing new to acknowledge.
    already_halted: list[SilentInstance] = Field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "command_id": self.command_id,
            "instances": [row.to_json() for row in self.instances],
            "acked": self.acked,
            "missing": [m.to_json() for m in self.missing],
        }


class ResumeReport(_CommandReport):
    """The result of ``resume``: who resumed, who stayed silent, and which records still hold."""

    still_held_by: list[HeldBy] = Field(default_factory=list)
    #: Whether a kill record existed for exactly this target before the resume.
    cleared: bool = True

    @property
    def complete(self) -> bool:
        return not self.missing and not self.still_held_by

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "command_id": self.command_id,
            "instances": [row.to_json() for row in self.instances],
            "acked": self.acked,
            "missing": [m.to_json() for m in self.missing],
            "still_held_by": [h.to_json() for h in self.still_held_by],
        }


class AgentStatus(_Report):
    """Everything known about one agent: records in force over it, its instances, their checkpoints."""

    agent_uri: str
    records: list[HeldBy] = Field(default_factory=list)
    instances: list[InstanceStatus] = Field(default_factory=list)
    checkpoints: dict[str, Checkpoint] = Field(default_factory=dict)

    @property
    def killed(self) -> bool:
        return bool(self.records)

    def to_json(self) -> dict[str, Any]:
        return {
            "agent_uri": self.agent_uri,
            "records": [r.to_json() for r in self.records],
            "instances": [
                {
                    "instance": i.instance,
                    "status": i.status.value,
                    "last_seen": i.last_seen.isoformat(),
                    "metadata": i.metadata,
                    "checkpoint": self.checkpoints[i.instance].state
                    if i.instance in self.checkpoints
                    else None,
                }
                for i in self.instances
            ],
        }

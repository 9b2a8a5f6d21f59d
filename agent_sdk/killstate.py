"""The kill records an instance knows of, per control key, applied strictly in KV revision order."""

from __future__ import annotations

from mesh.protocol.controlupdate import ControlUpdate
from mesh.protocol.killorder import InForce, RevisionOrder

__all__ = ["InForce", "KillState"]


class KillState:
    """Per key: the record in force at the highest revision applied (None = cleared).

    Which updates apply is ``mesh.protocol.killorder`` (rule 8 of docs/kill-contract.md). A pushed *clear*
    is never applied directly: the caller confirms it with a KV read.
    """

    def __init__(self, keys: list[str]) -> None:
        self.keys = frozenset(keys)
        self._order = RevisionOrder()
        self._records: dict[str, InForce] = {}

    def apply(self, updates: list[ControlUpdate], *, from_kv: bool = False, leader: bool = False) -> bool:
        """Apply the updates that are newer than what we hold; True if anything changed.

        ``from_kv`` marks a read of the bucket itself rather than a republished push; ``leader`` a
        read answered by the stream's leader (see ``mesh.protocol.killorder``).
        """
        changed = False
        for update in updates:
            if update.key in self.keys and self._order.admit(update, from_kv=from_kv, leader=leader):
                changed |= self._set(update)
        return changed

    def take_disputed(self) -> list[str]:
        return self._order.take_disputed()

    def _set(self, update: ControlUpdate) -> bool:
        if update.record is not None:
            self._records[update.key] = InForce(update.key, update.revision, update.record)
            return True
        return self._records.pop(update.key, None) is not None

    def revision(self, key: str) -> int:
        return self._order.revision(key)

    def in_force(self) -> list[InForce]:
        """Records in force, oldest revision first."""
        return sorted(self._records.values(), key=lambda r: r.revision)

    def __bool__(self) -> bool:
        return bool(self._records)

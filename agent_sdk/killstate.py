"""The kill records an instance knows of, per control key, applied strictly in KV revision order."""

from __future__ import annotations

from dataclasses import dataclass

from mesh.control import ControlUpdate
from mesh.models import KillRecord

__all__ = ["InForce", "KillState"]

#: Consecutive KV reads that must disagree with a pushed revision before the KV wins.
DISTRUST_AFTER = 2


@dataclass(frozen=True, slots=True)
class InForce:
    key: str
    revision: int
    record: KillRecord


class KillState:
    """Per key: the highest revision seen and the record it holds (None = cleared).

    Pushes and reads race; keeping the newest revision per key makes every instance converge
    to the KV's final state whatever order they arrive in (rule 8). Two guards keep a forged or
    corrupt push from masking real kills: a pushed *clear* is never applied directly (the
    caller confirms it with a KV read), and when KV reads keep returning a lower revision than
    a pushed one, the KV wins, because the KV is the truth and its revisions only grow.
    """

    def __init__(self, keys: list[str]) -> None:
        self.keys = frozenset(keys)
        self._revisions: dict[str, int] = {}
        self._records: dict[str, InForce] = {}
        self._pushed: set[str] = set()
        self._strikes: dict[str, int] = {}

    def apply(self, updates: list[ControlUpdate], *, from_kv: bool = False) -> bool:
        """Apply the updates that are newer than what we hold; True if anything changed.

        ``from_kv`` marks a read of the bucket itself rather than a republished push.
        """
        changed = False
        for update in updates:
            key = update.key
            if key not in self.keys:
                continue
            held = self._revisions.get(key, -1)
            if update.revision <= held:
                # Only a concrete entry (a record or a tombstone, revision > 0) may overrule a
                # push: a read that finds nothing, or fails, must never lift a kill.
                if from_kv and 0 < update.revision < held and key in self._pushed:
                    self._strikes[key] = self._strikes.get(key, 0) + 1
                    if self._strikes[key] < DISTRUST_AFTER:
                        continue
                else:
                    continue
            changed |= self._set(update)
            if from_kv:
                self._pushed.discard(key)
                self._strikes.pop(key, None)
            else:
                self._pushed.add(key)
        return changed

    def _set(self, update: ControlUpdate) -> bool:
        self._revisions[update.key] = update.revision
        if update.record is not None:
            self._records[update.key] = InForce(update.key, update.revision, update.record)
            return True
        return self._records.pop(update.key, None) is not None

    def revision(self, key: str) -> int:
        return self._revisions.get(key, 0)

    def in_force(self) -> list[InForce]:
        """Records in force, oldest revision first."""
        return sorted(self._records.values(), key=lambda r: r.revision)

    def __bool__(self) -> bool:
        return bool(self._records)

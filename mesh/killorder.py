"""Which kill-record updates to apply: strictly newer KV revisions, and the KV over a forged push (pure).

Shared by an agent's view of its own keys and the gateway's view of every key (docs/kill-contract.md,
rule 8). Pushes and reads race; keeping the newest revision per key makes every view converge to the
KV's final state whatever order they arrive in. A read that finds nothing (revision 0) never
overrules a push; when concrete KV reads keep returning a lower revision than a push claimed, the KV
wins after ``DISTRUST_AFTER`` of them, because the KV is the truth and its revisions only grow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mesh.control import ControlUpdate
    from mesh.models import KillRecord

__all__ = ["DISTRUST_AFTER", "InForce", "RevisionOrder"]

#: Consecutive KV reads that must disagree with a pushed revision before the KV wins.
DISTRUST_AFTER = 2


@dataclass(frozen=True, slots=True)
class InForce:
    """A kill record in force: the control key it is under and the KV revision that wrote it."""

    key: str
    revision: int
    record: KillRecord


class RevisionOrder:
    """Per control key: the highest revision applied, and whether it came from a push."""

    def __init__(self) -> None:
        self._revisions: dict[str, int] = {}
        self._pushed: set[str] = set()
        self._strikes: dict[str, int] = {}

    def admit(self, update: ControlUpdate, *, from_kv: bool) -> bool:
        """Whether to apply ``update`` (``from_kv``: a read of the bucket, not a republished push)."""
        key = update.key
        held = self._revisions.get(key, -1)
        if update.revision <= held:
            if not (from_kv and 0 < update.revision < held and key in self._pushed):
                return False
            self._strikes[key] = self._strikes.get(key, 0) + 1
            if self._strikes[key] < DISTRUST_AFTER:
                return False
        self._revisions[key] = update.revision
        if from_kv:
            self._pushed.discard(key)
            self._strikes.pop(key, None)
        else:
            self._pushed.add(key)
        return True

    def revision(self, key: str) -> int:
        return self._revisions.get(key, 0)

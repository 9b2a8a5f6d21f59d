"""Which kill-record updates to apply: strictly newer KV revisions, and the KV over a forged push (pure).

Shared by an agent's view of its own keys and the gateway's view of every key (docs/kill-contract.md,
rule 8). Pushes and reads race; keeping the newest revision per key makes every view converge to the
KV's final state whatever order they arrive in. A read that finds nothing (revision 0) never
overrules a push. A read that finds the key cleared at a lower revision than a push claimed may come
from a follower replica that lags (direct gets on a replicated bucket are answered by any replica):
only a read from the stream's leader may lift the kill, and the key is marked disputed so that the
caller asks the leader. When reads keep returning an older *record* than a push claimed (a forged or
corrupt push), the KV's record wins after ``DISTRUST_AFTER`` of them; the instance stays killed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mesh.protocol.controlupdate import ControlUpdate
    from mesh.protocol.models import KillRecord

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
        self._disputed: set[str] = set()

    def admit(self, update: ControlUpdate, *, from_kv: bool, leader: bool = False) -> bool:
        """Whether to apply ``update``.

        ``from_kv``: a read of the bucket, not a republished push; ``leader``: a read answered by
        the stream's leader (linearizable), not a direct get that any replica may answer.
        """
        key = update.key
        held = self._revisions.get(key, -1)
        if update.revision <= held:
            if not (from_kv and 0 < update.revision < held and key in self._pushed):
                return False
            if not leader:
                if update.record is None:
                    # A clear at a lower revision than a push is as likely a follower that lags as
                    # the truth, and would lift a kill: only the leader may say so (take_disputed).
                    self._disputed.add(key)
                    return False
                self._strikes[key] = self._strikes.get(key, 0) + 1
                if self._strikes[key] < DISTRUST_AFTER:
                    return False
        self._disputed.discard(key)
        self._revisions[key] = update.revision
        if from_kv:
            self._pushed.discard(key)
            self._strikes.pop(key, None)
        else:
            self._pushed.add(key)
        return True

    def revision(self, key: str) -> int:
        return self._revisions.get(key, 0)

    def take_disputed(self) -> list[str]:
        """Keys whose pushed kill a replica read contradicted with a clear: ask the leader."""
        keys, self._disputed = sorted(self._disputed), set()
        return keys

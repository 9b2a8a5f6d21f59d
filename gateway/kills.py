"""Kill records of every agent at once (pure): per control key, newest revision wins; who is refused.

The same rules as an agent's own view (docs/kill-contract.md, rule 8), over the whole control
bucket rather than one instance's nine keys: which updates apply is ``mesh.protocol.killorder``; a pushed
*clear* is never applied directly (the caller confirms it with a KV read, so a forged or replayed
push cannot lift a kill).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mesh.protocol.controlupdate import ControlUpdate
from mesh.protocol.killorder import InForce, RevisionOrder
from mesh.protocol.subjects import Namespace
from mesh.protocol.target import AgentURI

__all__ = ["Applied", "InForce", "KillBook"]


@dataclass(slots=True)
class Applied:
    """What an :meth:`KillBook.apply` did: keys newly in force, keys cleared, pushed clears to confirm."""

    killed: list[str] = field(default_factory=list)
    cleared: list[str] = field(default_factory=list)
    confirm: list[str] = field(default_factory=list)


class KillBook:
    """Every control key's highest revision seen and the record it holds."""

    def __init__(self, ns: Namespace) -> None:
        self.ns = ns
        self._order = RevisionOrder()
        self._records: dict[str, InForce] = {}

    def apply(self, updates: list[ControlUpdate], *, from_kv: bool = False) -> Applied:
        """Apply what is newer than what we hold; ``from_kv`` marks a read of the bucket itself."""
        out = Applied()
        for update in updates:
            key = update.key
            if not from_kv and update.record is None:
                if key in self._records:
                    out.confirm.append(key)
                continue
            if self._order.admit(update, from_kv=from_kv):
                self._set(update, out)
        return out

    def _set(self, update: ControlUpdate, out: Applied) -> None:
        if update.record is not None:
            was = self._records.get(update.key)
            self._records[update.key] = InForce(update.key, update.revision, update.record)
            if was is None or was.record.command_id != update.record.command_id:
                out.killed.append(update.key)
        elif self._records.pop(update.key, None) is not None:
            out.cleared.append(update.key)

    def held_keys(self) -> list[str]:
        """Keys with a record in force (a full re-read checks these for tombstones)."""
        return sorted(self._records)

    def revision(self, key: str) -> int:
        return self._order.revision(key)

    def matching(self, agent: AgentURI, instance: str) -> InForce | None:
        """The oldest record in force that covers this instance, at any scope; None lets it act."""
        if not self._records:
            return None
        found = [r for k in self.ns.matching_control_keys(agent, instance) if (r := self._records.get(k))]
        return min(found, key=lambda r: r.revision) if found else None

    def all_matching(self, agent: AgentURI, instance: str) -> list[InForce]:
        """Every record in force that covers this instance, oldest first (the HTTP API's answer)."""
        if not self._records:
            return []
        found = [r for k in self.ns.matching_control_keys(agent, instance) if (r := self._records.get(k))]
        return sorted(found, key=lambda r: r.revision)

    def in_force(self) -> list[InForce]:
        return sorted(self._records.values(), key=lambda r: r.revision)

    def __len__(self) -> int:
        return len(self._records)

"""Kill → acknowledged latency, pure: pair each kill event with the halted events that answer it."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

__all__ = ["ACTOR_KINDS", "KillClock", "actor_kind"]

#: The ``actor_kind`` label's values: a bounded set, whatever actors appear in the audit trail.
ACTOR_KINDS = ("human", "policy", "dashboard")


def actor_kind(actor: str | None) -> str:
    """``policy:NAME`` → policy, ``dashboard:USER`` → dashboard, anything else → human."""
    if actor:
        if actor.startswith("policy:"):
            return "policy"
        if actor.startswith("dashboard:"):
            return "dashboard"
    return "human"


@dataclass(slots=True)
class _Kill:
    at: float
    kind: str
    seen: float
    answered: set[str] = field(default_factory=set)


@dataclass(slots=True)
class _Orphan:
    """Halts heard before their kill event (the record reaches instances before its audit event)."""

    seen: float
    halts: dict[str, float] = field(default_factory=dict)


class KillClock:
    """Remembers recent kills by command id; each instance's first halt for a kill is one sample.

    Times are the events' own ``time`` fields (the writers' clocks); ``seen`` is when we heard of
    them (our clock), used only to forget. Both tables are bounded: old entries go first.
    """

    def __init__(self, *, keep: float = 600.0, max_kills: int = 10_000) -> None:
        self.keep = keep
        self.max_kills = max_kills
        self._kills: OrderedDict[str, _Kill] = OrderedDict()
        self._orphans: OrderedDict[str, _Orphan] = OrderedDict()

    def kill(self, command_id: str, at: float, actor: str | None, now: float) -> list[tuple[str, float]]:
        """A kill event; returns (actor_kind, seconds) for halts that arrived before it."""
        self._forget(now)
        if command_id in self._kills:
            return []  # a retried publish: the stream dropped it, a core subscriber sees it again
        kill = self._kills[command_id] = _Kill(at, actor_kind(actor), now)
        self._bound(self._kills)
        orphan = self._orphans.pop(command_id, None)
        if orphan is None:
            return []
        out = []
        for instance, halted_at in orphan.halts.items():
            kill.answered.add(instance)
            out.append((kill.kind, max(0.0, halted_at - at)))
        return out

    def halted(self, command_id: str, instance: str, at: float, now: float) -> tuple[str, float] | None:
        """A halt answering ``command_id``; (actor_kind, seconds) if its kill is known and it is new."""
        kill = self._kills.get(command_id)
        if kill is None:
            orphan = self._orphans.get(command_id)
            if orphan is None:
                self._forget(now)
                orphan = self._orphans[command_id] = _Orphan(now)
                self._bound(self._orphans)
            orphan.halts.setdefault(instance, at)
            return None
        if instance in kill.answered:
            return None
        kill.answered.add(instance)
        # Clock skew between the operator's and the instance's machines can make this negative.
        return kill.kind, max(0.0, at - kill.at)

    def __len__(self) -> int:
        return len(self._kills) + len(self._orphans)

    def _forget(self, now: float) -> None:
        kills, orphans = self._kills, self._orphans
        while kills and now - next(iter(kills.values())).seen > self.keep:
            kills.popitem(last=False)
        while orphans and now - next(iter(orphans.values())).seen > self.keep:
            orphans.popitem(last=False)

    def _bound(self, table: OrderedDict[str, _Kill] | OrderedDict[str, _Orphan]) -> None:
        while len(table) > self.max_kills:
            table.popitem(last=False)

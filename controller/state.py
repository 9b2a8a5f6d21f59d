"""The pure fleet state machine: heartbeats, lifecycle events and time in; transitions and writes out."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from mesh.protocol.models import AuditEvent, EventType, Heartbeat, InstanceStatus, Status

__all__ = [
    "LIFECYCLE_TYPES",
    "SWEPT",
    "Entry",
    "Fleet",
    "Policy",
    "Transition",
    "event_id",
    "to_datetime",
]

#: Statuses the sweep may turn into ``stale``/``lost``: instances believed to be running.
SWEPT = frozenset({Status.ACTIVE, Status.PAUSED, Status.STALE})
#: Statuses after which a heartbeat older than the last report (same pid) is a late straggler.
TERMINAL = frozenset({Status.KILLED, Status.TERMINATED, Status.CRASHED, Status.STOPPED})
#: Audit event types published by the instances themselves, which the controller follows.
LIFECYCLE_TYPES = (
    EventType.STARTED,
    EventType.HALTED,
    EventType.RESUMED,
    EventType.STOPPED,
    EventType.CRASHED,
    EventType.TERMINATED,
)
_LIFECYCLE_STATUS = {
    EventType.STARTED: Status.ACTIVE,
    EventType.RESUMED: Status.ACTIVE,
    EventType.STOPPED: Status.STOPPED,
    EventType.CRASHED: Status.CRASHED,
    EventType.TERMINATED: Status.TERMINATED,
}
_HALTED = {"paused": Status.PAUSED, "killed": Status.KILLED, "terminated": Status.TERMINATED}


def to_datetime(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def event_id(key: str, event: EventType, basis: str) -> str:
    """Deterministic audit event id: a controller re-detecting the same transition reuses it."""
    return hashlib.sha256(f"{key}|{event.value}|{basis}".encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Policy:
    lost_after: float = 30.0
    stale_intervals: float = 3.0
    refresh_every: float = 5.0
    retention: float = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class Transition:
    """A status change of one instance; ``event`` is set when the controller must audit it."""

    key: str
    agent_uri: str
    instance: str
    old: Status | None
    new: Status
    at: float
    cause: str
    last_seen: float
    event: EventType | None = None

    def audit_event(self, actor: str, event_id: str) -> AuditEvent:
        assert self.event is not None
        silent = max(0.0, self.at - self.last_seen)
        return AuditEvent(
            id=event_id,
            time=to_datetime(self.at),
            type=self.event,
            agent_uri=self.agent_uri,
            instance=self.instance,
            actor=actor,
            reason=self.cause,
            data={
                "from": self.old.value if self.old else None,
                "to": self.new.value,
                "last_seen": to_datetime(self.last_seen).isoformat(),
                "silent_for": round(silent, 3),
            },
        )


@dataclass(slots=True)
class Entry:
    """What the controller knows of one instance (times are epoch seconds)."""

    key: str
    agent_uri: str
    instance: str
    status: Status
    first_seen: float
    last_seen: float
    last_change: float
    cause: str = ""
    interval: float = 2.0
    host: str = ""
    pid: int = 0
    sdk_version: str = ""
    hard_kill: bool = True
    on_kill: Literal["raise", "pause"] = "raise"
    metadata: dict[str, Any] = field(default_factory=dict)
    kill_keys: list[str] = field(default_factory=list)
    usage: dict[str, float] = field(default_factory=dict)
    #: The instance's own clock at its latest report (heartbeat or lifecycle event).
    agent_time: float = 0.0
    #: KV revision of our latest write of this record (0: never written).
    revision: int = 0
    #: ``last_seen`` as of our latest write, and when that write happened.
    written_seen: float = float("-inf")
    written_at: float = float("-inf")
    #: Audit events the controller published about this instance since that write.
    events_since_write: int = 0

    def record(self) -> InstanceStatus:
        return InstanceStatus(
            agent_uri=self.agent_uri,
            instance=self.instance,
            status=self.status,
            first_seen=to_datetime(self.first_seen),
            last_seen=to_datetime(self.last_seen),
            last_change=to_datetime(self.last_change),
            cause=self.cause or None,
            host=self.host,
            pid=self.pid,
            sdk_version=self.sdk_version,
            interval=self.interval,
            hard_kill=self.hard_kill,
            on_kill=self.on_kill,
            metadata=self.metadata,
            kill_keys=self.kill_keys,
            usage=self.usage,
        )


class Fleet:
    """All instances, with the rules for their transitions. No I/O: the caller supplies ``now``."""

    def __init__(self, policy: Policy | None = None) -> None:
        self.policy = policy or Policy()
        self.entries: dict[str, Entry] = {}
        #: Keys to write at once (new instance or status change).
        self.urgent: set[str] = set()
        #: Keys to delete from the KV (retention).
        self.expired: set[str] = set()

    # -- inputs ---------------------------------------------------------------------------------
    def restore(self, key: str, rec: InstanceStatus, revision: int) -> None:
        """Load a record written earlier (by us or a previous controller)."""
        last_seen = rec.last_seen.timestamp()
        self.entries[key] = Entry(
            key=key,
            agent_uri=rec.agent_uri,
            instance=rec.instance,
            status=rec.status,
            first_seen=rec.first_seen.timestamp(),
            last_seen=last_seen,
            last_change=rec.last_change.timestamp(),
            cause=rec.cause or "",
            interval=rec.interval,
            host=rec.host,
            pid=rec.pid,
            sdk_version=rec.sdk_version,
            hard_kill=rec.hard_kill,
            on_kill=rec.on_kill,
            metadata=dict(rec.metadata),
            kill_keys=list(rec.kill_keys),
            usage=dict(rec.usage),
            revision=revision,
            written_seen=last_seen,
            written_at=last_seen,
        )

    def heartbeat(self, key: str, hb: Heartbeat, now: float) -> Transition | None:
        """Apply one valid heartbeat received at ``now``; the hot path."""
        e = self.entries.get(key)
        agent_time = hb.time.timestamp()
        if e is None:
            e = self.entries[key] = Entry(
                key=key,
                agent_uri=hb.agent_uri,
                instance=hb.instance,
                status=hb.status,
                first_seen=now,
                last_seen=now,
                last_change=now,
                cause="first heartbeat",
            )
            self._copy(e, hb)
            e.agent_time = agent_time
            self.urgent.add(key)
            return Transition(key, e.agent_uri, e.instance, None, hb.status, now, "first heartbeat", now)
        if e.status in TERMINAL and agent_time < e.agent_time and hb.pid == e.pid:
            return None  # a straggler sent before the instance's final report
        previous_seen = e.last_seen
        e.last_seen = now
        e.agent_time = agent_time
        e.metadata = hb.metadata
        e.usage = hb.usage
        if (
            hb.status is e.status
            and hb.kill_keys == e.kill_keys
            and hb.interval == e.interval
            and hb.pid == e.pid
            and hb.hard_kill == e.hard_kill
            and hb.on_kill == e.on_kill
            and hb.host == e.host
            and hb.sdk_version == e.sdk_version
        ):
            return None
        self._copy(e, hb)
        self.urgent.add(e.key)
        if hb.status is e.status:
            return None
        old = e.status
        if old in (Status.STALE, Status.LOST):
            cause = f"heartbeat after {now - previous_seen:.1f}s of silence"
            return self._change(e, hb.status, now, cause, previous_seen, EventType.RECOVERED)
        return self._change(e, hb.status, now, f"reported {hb.status.value}", previous_seen)

    def lifecycle(self, key: str, event: AuditEvent, now: float) -> Transition | None:
        """Apply a lifecycle event (``started``, ``halted``, ``stopped``...) published by an instance."""
        if event.type is EventType.HALTED:
            new = _HALTED.get(str(event.data.get("status")), Status.KILLED)
        elif event.type in _LIFECYCLE_STATUS:
            new = _LIFECYCLE_STATUS[event.type]
        else:
            return None
        if not event.agent_uri or not event.instance:
            return None
        at = event.time.timestamp()
        cause = f"{event.type.value} event" + (f": {event.reason}" if event.reason else "")
        e = self.entries.get(key)
        if e is None:
            seen = min(at, now)
            e = self.entries[key] = Entry(
                key=key,
                agent_uri=event.agent_uri,
                instance=event.instance,
                status=new,
                first_seen=seen,
                last_seen=seen,
                last_change=now,
                cause=cause,
                agent_time=at,
            )
            self.urgent.add(key)
            return Transition(key, e.agent_uri, e.instance, None, new, now, cause, seen)
        if at < e.agent_time or new is e.status:
            return None  # older than what the instance has told us since, or nothing new
        e.agent_time = at
        e.last_seen = max(e.last_seen, min(at, now))
        self.urgent.add(key)
        return self._change(e, new, now, cause, e.last_seen)

    def sweep(self, now: float) -> list[Transition]:
        """Mark silent instances stale or lost, and expire records past retention."""
        out: list[Transition] = []
        p = self.policy
        for key, e in self.entries.items():
            silent = now - e.last_seen
            if silent > p.retention:
                self.expired.add(key)
                continue
            if e.status not in SWEPT:
                continue
            if silent > p.lost_after:
                why = f"no heartbeat for {silent:.1f}s (lost after {p.lost_after:g}s)"
                out.append(self._change(e, Status.LOST, now, why, e.last_seen, EventType.LOST))
                self.urgent.add(key)
            elif e.status is not Status.STALE and silent > p.stale_intervals * e.interval:
                why = f"no heartbeat for {silent:.1f}s ({p.stale_intervals:g} x {e.interval:g}s interval)"
                out.append(self._change(e, Status.STALE, now, why, e.last_seen, EventType.STALE))
                self.urgent.add(key)
        for key in self.expired:
            self.entries.pop(key, None)
            self.urgent.discard(key)
        return out

    # -- outputs --------------------------------------------------------------------------------
    def due(self, now: float, *, refresh: bool) -> list[Entry]:
        """Entries to write now: every urgent one, plus (if ``refresh``) those heard from since
        their last write, when that write is ``refresh_every`` old."""
        keys = self.urgent
        self.urgent = set()
        out = [self.entries[k] for k in keys if k in self.entries]
        if refresh:
            every = self.policy.refresh_every
            out.extend(
                e
                for k, e in self.entries.items()
                if k not in keys and e.last_seen > e.written_seen and now - e.written_at >= every
            )
        return out

    def written(self, key: str, revision: int, last_seen: float, now: float) -> None:
        e = self.entries.get(key)
        if e is not None:
            e.revision = revision
            e.written_seen = last_seen
            e.written_at = now
            e.events_since_write = 0

    def event_basis(self, t: Transition) -> str:
        """What the id of ``t``'s audit event derives from: the KV revision the controller acted on
        and how many events it published since, so a restarted controller re-detecting the same
        transition (from the same record) produces the same id and the stream drops the copy."""
        e = self.entries.get(t.key)
        if e is not None and e.revision:
            return f"r{e.revision}.{e.events_since_write}"
        return f"t{t.last_seen:.3f}"

    def published(self, key: str) -> None:
        e = self.entries.get(key)
        if e is not None:
            e.events_since_write += 1

    def retry(self, keys: list[str]) -> None:
        """Writes that failed: keep them urgent."""
        self.urgent.update(k for k in keys if k in self.entries)

    def take_expired(self) -> list[str]:
        keys = sorted(self.expired)
        self.expired.clear()
        return keys

    def counts(self) -> dict[str, int]:
        c = Counter(e.status.value for e in self.entries.values())
        return {s.value: c.get(s.value, 0) for s in Status}

    def longest_interval(self) -> float:
        return max((e.interval for e in self.entries.values()), default=0.0)

    # -- helpers --------------------------------------------------------------------------------
    @staticmethod
    def _copy(e: Entry, hb: Heartbeat) -> None:
        e.interval = hb.interval
        e.host = hb.host
        e.pid = hb.pid
        e.sdk_version = hb.sdk_version
        e.hard_kill = hb.hard_kill
        e.on_kill = hb.on_kill
        e.metadata = hb.metadata
        e.kill_keys = hb.kill_keys
        e.usage = hb.usage

    @staticmethod
    def _change(
        e: Entry,
        new: Status,
        now: float,
        cause: str,
        last_seen: float,
        event: EventType | None = None,
    ) -> Transition:
        old = e.status
        e.status = new
        e.last_change = now
        e.cause = cause
        return Transition(e.key, e.agent_uri, e.instance, old, new, now, cause, last_seen, event)

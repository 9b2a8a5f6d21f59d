"""Kill and resume as pure data: key, record and audit event from a target; who must answer; the report.

Used by the operator API (``AsyncMesh.kill``/``resume``) and by the policy engine, so that a kill
is written one way whoever issues it. Nothing here does I/O.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from mesh.errors import InvalidTarget, MalformedMessage
from mesh.protocol.codec import decode
from mesh.protocol.kvwire import KVEntry
from mesh.protocol.models import (
    LIVE_STATUSES,
    AuditEvent,
    EventType,
    InstanceStatus,
    KillRecord,
    Status,
    new_id,
    utcnow,
)
from mesh.protocol.reports import AckRow, HeldBy, KillReport, ResumeReport, SilentInstance
from mesh.protocol.subjects import ANY, key_to_target, target_to_key
from mesh.protocol.target import WILDCARD, AgentURI, Target, parse_agent_uri

__all__ = [
    "AckMatch",
    "InstanceId",
    "KillCommand",
    "KillPlan",
    "ResumeCommand",
    "ResumePlan",
    "covers",
    "kill_command",
    "kill_plan",
    "kill_report",
    "policy_kill_command",
    "records_over",
    "resume_command",
    "resume_plan",
    "resume_report",
    "scoped_control_filters",
]

InstanceId = tuple[str, str]
KillAction = Literal["raise", "pause"]


@dataclass(frozen=True, slots=True)
class AckMatch:
    """Which acknowledgement events answer a command, as data.

    An event answers if it names one of ``command_ids``, or, once the command's KV revision is
    known, if it names that revision (a kill) or any revision from it on (a resume, whose
    ``resumed`` events carry no command id, and whose instances may resume under a later clear).
    """

    command_ids: frozenset[str]
    revision: int = 0
    or_later: bool = False

    def at(self, revision: int) -> AckMatch:
        return replace(self, revision=revision)

    def accepts(self, event: AuditEvent) -> bool:
        if event.command_id is not None and event.command_id in self.command_ids:
            return True
        if self.revision <= 0:
            return False
        if self.or_later:
            return event.revision is None or event.revision >= self.revision
        return event.revision == self.revision


def _silent(s: InstanceStatus) -> SilentInstance:
    return SilentInstance(
        agent_uri=s.agent_uri, instance=s.instance, status=s.status.value, last_seen=s.last_seen
    )


def _matches(target: Target, s: InstanceStatus) -> bool:
    try:
        return target.matches(parse_agent_uri(s.agent_uri), s.instance)
    except InvalidTarget:
        return False


def covers(outer: Target, inner: Target) -> bool:
    """Whether every instance ``inner`` covers is also covered by ``outer``."""
    for a, b in zip(outer.tokens, inner.tokens, strict=True):
        if a != "*" and a != b:
            return False
    return outer.instance is None or outer.instance == inner.instance


def records_over(entries: Mapping[str, KVEntry], over: Target, *, skip: str | None = None) -> list[HeldBy]:
    """The kill records among control-bucket ``entries`` whose targets overlap ``over``.

    A record that does not decode is in force all the same (docs/kill-contract.md, rule 5).
    """
    held: list[HeldBy] = []
    for key, entry in sorted(entries.items()):
        if key == skip:
            continue
        try:
            target = key_to_target(key)
        except InvalidTarget:
            continue
        if not target.overlaps(over):
            continue
        try:
            record = decode(KillRecord, entry.value)
        except MalformedMessage:
            record = KillRecord(target=target.uri, reason="unreadable kill record (treated as in force)")
        held.append(HeldBy(key=key, target=str(target), revision=entry.revision, record=record))
    return held


def scoped_control_filters(target: Target) -> list[str]:
    """KV key filters for the control records that can overlap ``target`` and lie in its org.

    A concrete segment may be held by a record for it or for ``_`` (any); a wildcard segment by
    anything. The org stays concrete: that is all an org-scoped identity may read.
    """
    org = "*" if target.org == WILDCARD else target.org
    envs = ["*"] if target.env == WILDCARD else [target.env, ANY]
    names = ["*"] if target.name == WILDCARD else [target.name, ANY]
    out: list[str] = []
    for env in envs:
        for name in names:
            base = f"{org}.{env}.{name}"
            out += [base, f"{base}.{target.instance}" if target.instance else f"{base}.*"]
    return out


# -- kill -------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class KillCommand:
    """One kill: the control key to write, the record to write there, and how to audit it."""

    target: Target
    key: str
    record: KillRecord
    #: Extra fields of the audit event's data (the policy that issued it, say).
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def acks(self) -> AckMatch:
        return AckMatch(frozenset({self.record.command_id}))

    def event(self, revision: int) -> AuditEvent:
        """The ``kill`` audit event once the record is written at ``revision``."""
        record = self.record
        return AuditEvent(
            type=EventType.KILL,
            target=self.target.uri,
            instance=self.target.instance,
            actor=record.actor,
            reason=record.reason,
            command_id=record.command_id,
            revision=revision,
            data={"key": self.key, "grace": record.grace, "action": record.action, **self.extra},
        )


def kill_command(
    target: Target,
    *,
    actor: str,
    reason: str | None = None,
    grace: float = 10.0,
    action: KillAction | None = None,
) -> KillCommand:
    record = KillRecord(
        target=target.uri, instance=target.instance, actor=actor, reason=reason, grace=grace, action=action
    )
    return KillCommand(target, target_to_key(target), record)


def policy_kill_command(
    agent: AgentURI, *, policy: str, policy_action: str, actor: str, reason: str, grace: float
) -> KillCommand:
    """The kill a breached policy issues: exactly the breaching agent's key, never the policy's pattern.

    A policy's ``kill`` is the record action ``raise``; its ``pause`` is ``pause``.
    """
    action: KillAction = "raise" if policy_action == "kill" else "pause"
    command = kill_command(
        Target(agent.org, agent.env, agent.name), actor=actor, reason=reason, grace=grace, action=action
    )
    return replace(command, extra={"policy": policy})


@dataclass(frozen=True, slots=True)
class KillPlan:
    """Who must answer a kill: the live matching instances, and which of them were already paused."""

    live: tuple[InstanceStatus, ...]
    #: Instances already paused by another record: they may have nothing new to say.
    already: frozenset[InstanceId]

    @property
    def expected(self) -> set[InstanceId]:
        return {(s.agent_uri, s.instance) for s in self.live}


def kill_plan(target: Target, statuses: Iterable[InstanceStatus]) -> KillPlan:
    live = tuple(s for s in statuses if s.status in LIVE_STATUSES and _matches(target, s))
    already = frozenset((s.agent_uri, s.instance) for s in live if s.status is Status.PAUSED and s.kill_keys)
    return KillPlan(live, already)


def kill_report(
    command: KillCommand, revision: int, plan: KillPlan, rows: Mapping[InstanceId, AckRow]
) -> KillReport:
    """The report of a kill from its plan and the acknowledgements that arrived."""
    record = command.record
    unanswered = [s for s in plan.live if (s.agent_uri, s.instance) not in rows]
    return KillReport(
        target=str(command.target),
        command_id=record.command_id,
        revision=revision,
        actor=record.actor,
        reason=record.reason,
        issued_at=record.issued_at,
        instances=sorted(rows.values(), key=lambda r: (r.agent_uri, r.instance)),
        missing=[_silent(s) for s in unanswered if (s.agent_uri, s.instance) not in plan.already],
        expected=len(plan.live),
        already_halted=[_silent(s) for s in unanswered if (s.agent_uri, s.instance) in plan.already],
    )


# -- resume -----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ResumeCommand:
    """One resume: the control key to clear, and how to audit it."""

    target: Target
    key: str
    actor: str
    reason: str | None
    command_id: str = field(default_factory=new_id)
    issued_at: datetime = field(default_factory=utcnow)

    def acks(self, cleared: Mapping[str, KVEntry]) -> AckMatch:
        """Resumes answer this command, or the kill it clears (whose id some acks carry)."""
        ids = {self.command_id}
        entry = cleared.get(self.key)
        if entry is not None:
            with contextlib.suppress(MalformedMessage):
                ids.add(decode(KillRecord, entry.value).command_id)
        return AckMatch(frozenset(ids), or_later=True)

    def event(self, revision: int, *, cleared: bool) -> AuditEvent:
        return AuditEvent(
            type=EventType.RESUME,
            target=self.target.uri,
            instance=self.target.instance,
            actor=self.actor,
            reason=self.reason,
            command_id=self.command_id,
            revision=revision,
            data={"key": self.key, "cleared": cleared},
        )


def resume_command(target: Target, *, actor: str, reason: str | None = None) -> ResumeCommand:
    return ResumeCommand(target, target_to_key(target), actor, reason)


@dataclass(frozen=True, slots=True)
class ResumePlan:
    """Who must answer a resume, and what still holds part of the target after it."""

    held: tuple[HeldBy, ...]
    #: Paused matching instances that no other record holds: they must resume.
    free: tuple[InstanceStatus, ...]
    #: Whether to wait for acknowledgements at all (nothing can answer when everything stays held).
    wait: bool
    cleared: bool

    @property
    def expected(self) -> set[InstanceId]:
        return {(s.agent_uri, s.instance) for s in self.free}


def resume_plan(
    command: ResumeCommand, records: Mapping[str, KVEntry], statuses: Iterable[InstanceStatus]
) -> ResumePlan:
    """Plan a resume from the control bucket as read before the clear and the fleet's statuses."""
    target = command.target
    held = tuple(records_over(records, target, skip=command.key))
    held_targets = [key_to_target(h.key) for h in held]
    cleared = command.key in records
    paused = [s for s in statuses if s.status is Status.PAUSED and _matches(target, s)]
    # A resume that cleared nothing changed nothing, so no instance owes it an answer; the
    # controller may still list as paused an instance that an earlier resume has just freed.
    free = tuple(s for s in paused if cleared and not any(_matches(t, s) for t in held_targets))
    wait = bool(free) or not (paused or any(covers(t, target) for t in held_targets))
    return ResumePlan(held, free, wait, cleared)


def resume_report(
    command: ResumeCommand, revision: int, plan: ResumePlan, rows: Mapping[InstanceId, AckRow]
) -> ResumeReport:
    return ResumeReport(
        target=str(command.target),
        command_id=command.command_id,
        revision=revision,
        actor=command.actor,
        reason=command.reason,
        issued_at=command.issued_at,
        instances=sorted(rows.values(), key=lambda r: (r.agent_uri, r.instance)),
        missing=[_silent(s) for s in plan.free if (s.agent_uri, s.instance) not in rows],
        expected=len(plan.free),
        still_held_by=list(plan.held),
        cleared=plan.cleared,
    )

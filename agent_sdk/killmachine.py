"""One instance's kill lifecycle as a pure state machine: events in, effects out; no I/O, no asyncio.

``agent_sdk/core.py`` is the driver: it feeds the machine what happened (records pushed or read,
the link lost or back, a safe point reached, acknowledgements sent) and carries out the effects it
returns (cancel guarded work, acknowledge, send a heartbeat, schedule an escalation, wake
sleepers). The rules are docs/kill-contract.md's; ``tests/unit/test_killmachine_model.py`` checks
them over random interleavings.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from agent_sdk.config import OnKill
from agent_sdk.killstate import InForce, KillState
from mesh.errors import AgentKilled
from mesh.protocol.controlupdate import ControlUpdate
from mesh.protocol.models import Status

__all__ = ["Effects", "HaltPlan", "KillMachine", "Verdict"]

#: Acknowledged and reached command ids are forgotten (those no longer in force) past this many.
FORGET_AFTER = 1024


class Verdict(StrEnum):
    """What a safe point does now."""

    ACT = "act"  # nothing in force and nothing being re-read: the action may run
    WAIT = "wait"  # the records are being re-read (after a reconnect or a freeze): not yet
    HALT = "halt"  # a record in force, or fail-closed: acknowledge, then raise or pause


@dataclass(frozen=True, slots=True)
class Effects:
    """What a change asks of the driver, in this order."""

    #: Records whose hard-kill escalation must be scheduled after their grace (once each).
    escalate: tuple[InForce, ...] = ()
    #: Cancel every guarded call in flight (a kill interrupts them at once).
    cancel_guarded: bool = False
    #: Acknowledge now: the instance is parked at a safe point, so nobody else will.
    halt: bool = False
    #: Wake sync sleepers only after that acknowledgement (so the ack is not slowed by them).
    defer_wake: bool = False
    #: Publish ``resumed``: the last record was cleared while halted and nobody waits in a pause.
    resume: bool = False
    #: Send a status heartbeat.
    heartbeat: bool = False


@dataclass(frozen=True, slots=True)
class HaltPlan:
    """A halt to carry out: the status to report, and the records not yet acknowledged."""

    status: Status
    new: tuple[InForce, ...]


class KillMachine:
    """What one instance knows of the kills over it, and what it owes for them.

    Lifecycle: running (``halted`` false) → halted with status ``paused`` or ``killed`` once a
    safe point acknowledged → running again only after a clear read from the KV itself.
    """

    def __init__(
        self, keys: Iterable[str], *, on_kill: OnKill, hard_kill: bool, fail_closed_after: float | None
    ) -> None:
        self.records = KillState(list(keys))
        self.on_kill: OnKill = on_kill
        self.hard_kill = hard_kill
        self.fail_closed_after = fail_closed_after
        #: Re-reading the records after the link came back or the loop froze: safe points wait.
        self.syncing = False
        #: No contact for ``fail_closed_after``: halted as if killed until a re-read succeeds.
        self.fail_closed = False
        self.halted = False
        self.status = Status.ACTIVE
        self._acked: set[str] = set()
        self._reached: set[str] = set()
        self._escalating: set[str] = set()

    # -- queries ------------------------------------------------------------------------------------
    @property
    def keys(self) -> frozenset[str]:
        return self.records.keys

    def in_force(self) -> list[InForce]:
        return self.records.in_force()

    @property
    def killed(self) -> bool:
        return bool(self.records) or self.fail_closed

    @property
    def needs_attention(self) -> bool:
        """Whether safe points must leave their fast path."""
        return self.killed or self.syncing

    def verdict(self) -> Verdict:
        if self.syncing:
            return Verdict.WAIT
        return Verdict.HALT if self.killed else Verdict.ACT

    def mode(self) -> OnKill:
        """What a halt does: a record's own ``action`` overrides on_kill; ``raise`` wins a tie."""
        actions = [r.record.action or self.on_kill for r in self.in_force()] or [self.on_kill]
        return "raise" if "raise" in actions else "pause"

    def killed_error(self) -> AgentKilled:
        held = self.in_force()
        if held:
            return AgentKilled(held[0].record)
        limit = self.fail_closed_after or 0.0
        return AgentKilled(None, reason=f"no contact with NATS for {limit:g}s (fail_closed_after)")

    def acked(self, command_id: str) -> bool:
        return command_id in self._acked

    # -- events -------------------------------------------------------------------------------------
    def apply(
        self, updates: list[ControlUpdate], *, from_kv: bool, leader: bool = False
    ) -> list[InForce] | None:
        """Records pushed (``from_kv=False``) or read; the newly seen records, or None if nothing changed.

        A pushed clear is never applied here (the driver confirms it with a read first, rule 8).
        After a read, :meth:`take_disputed` names keys that only a read from the leader may clear.
        """
        if not from_kv:
            updates = [u for u in updates if u.record is not None]
        before = {r.record.command_id for r in self.in_force()}
        if not self.records.apply(updates, from_kv=from_kv, leader=leader):
            return None
        return [r for r in self.in_force() if r.record.command_id not in before]

    def refresh(self, *, parked: bool, sync_parked: bool, pausing: bool, closed: bool) -> Effects:
        """After any change: what to do about it.

        ``parked``: someone waits at a safe point (sleeping, or inside a guarded call);
        ``sync_parked``: a sync agent's thread sleeps; ``pausing``: a safe point holds a pause.
        """
        held = self.in_force()
        live = {r.record.command_id for r in held}
        # Command ids are unique, so remembering one longer than its record is harmless, and a
        # record that leaves and comes back (a forged push, then the KV again) is not acked twice.
        if len(self._acked) + len(self._reached) > FORGET_AFTER:
            self._acked &= live
            self._reached &= live
        self._escalating &= live
        escalate: tuple[InForce, ...] = ()
        if self.hard_kill:
            escalate = tuple(r for r in held if r.record.command_id not in self._escalating)
            self._escalating.update(r.record.command_id for r in escalate)
        if closed:  # a push delivered while closing: nothing left to report to
            return Effects(escalate=escalate)
        if self.killed:
            immediate = parked or sync_parked or pausing or self.halted
            return Effects(
                escalate=escalate,
                cancel_guarded=True,
                halt=immediate,
                defer_wake=immediate and sync_parked,
                heartbeat=not immediate,  # the halt sends its own
            )
        if self.halted:
            # A paused safe point that wakes publishes the resume itself.
            return Effects(escalate=escalate, resume=not pausing)
        return Effects(escalate=escalate, heartbeat=True)

    def take_disputed(self) -> list[str]:
        """Keys whose pushed kill a replica's read contradicted: read them from the leader."""
        return self.records.take_disputed()

    def link_lost_too_long(self) -> bool:
        """No contact for ``fail_closed_after``: halt. True if this changed anything."""
        if self.fail_closed:
            return False
        self.fail_closed = True
        return True

    def sync_started(self) -> None:
        self.syncing = True

    def sync_done(self) -> None:
        """The records were re-read (or the driver gave up waiting for it): fail-closed is over."""
        self.syncing = False
        self.fail_closed = False

    def plan_halt(self) -> HaltPlan | None:
        """A safe point halts: the records it now answers for; None when there is nothing to do."""
        held = self.in_force()
        if not held and not self.fail_closed:
            return None
        self._reached.update(r.record.command_id for r in held)
        status = Status.PAUSED if self.mode() == "pause" else Status.KILLED
        new = tuple(r for r in held if r.record.command_id not in self._acked)
        if self.halted and not new and self.status == status:
            return None
        return HaltPlan(status, new)

    def halting(self, plan: HaltPlan) -> None:
        """The driver is about to acknowledge ``plan`` (its cancelled calls have unwound)."""
        self.halted = True
        self.status = plan.status

    def acknowledged(self, command_id: str) -> None:
        self._acked.add(command_id)

    def resume(self) -> bool:
        """Leave the halt if nothing holds us any more; True if ``resumed`` must be published."""
        if not self.halted or self.killed:
            return False
        self.halted = False
        self.status = Status.ACTIVE
        return True

    def escalation_due(self, command_id: str) -> InForce | None:
        """A record's grace ran out: the record, if it is still in force and no safe point reached it."""
        if not self.hard_kill or command_id in self._reached:
            return None
        return next((r for r in self.in_force() if r.record.command_id == command_id), None)

    def reached(self, command_id: str) -> bool:
        return command_id in self._reached

"""A model check of the kill contract: the pure kill machine under random interleavings (hypothesis).

A simulated control KV takes kills and clears; its republished pushes reach the machine in order,
out of order, twice, or never; forged pushes claim revisions the KV never wrote; reads return the
KV now, or as a lagging follower replica has it; the link drops and comes back; the loop freezes;
safe points run. After every step the contract's rules are checked (docs/kill-contract.md):
never "may act" while a record the instance has seen is still in force; never a resume without a
read that confirms the clear; every kill acknowledged once; settled, the machine holds what the
KV holds, in revision order. ``MESH_MODEL_EXAMPLES`` raises the number of runs (``make model-check``).
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from agent_sdk.killmachine import Effects, KillMachine, Verdict
from mesh.protocol.controlupdate import ControlUpdate
from mesh.protocol.models import KillRecord

KEYS = ["acme.prod.mailer", "acme._._"]
EXAMPLES = int(os.environ.get("MESH_MODEL_EXAMPLES", "150"))

keys = st.sampled_from(KEYS)


class KillContract(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.machine = KillMachine(KEYS, on_kill="pause", hard_kill=True, fail_closed_after=5.0)
        self.revision = 0
        #: The KV now: key -> (revision, record or None); and every state it went through.
        self.kv: dict[str, tuple[int, KillRecord | None]] = {}
        self.history: list[dict[str, tuple[int, KillRecord | None]]] = [{}]
        #: How far a follower replica has applied the KV's history (it lags, then catches up).
        self.follower = 0
        #: Republished pushes on their way to the instance.
        self.pushes: list[ControlUpdate] = []
        #: Per key, the highest real revision delivered to the instance (push or read).
        self.seen: dict[str, int] = {}
        #: Records in force when the link last came back: honoured before any action (rule 3).
        self.owed: dict[str, int] = {}
        #: Keys that received a forged push.
        self.forged: set[str] = set()
        self.acks: dict[str, int] = {}

    # -- the KV ---------------------------------------------------------------------------------
    def _write(self, key: str, record: KillRecord | None) -> None:
        self.revision += 1
        self.kv[key] = (self.revision, record)
        self.history.append(dict(self.kv))
        self.pushes.append(ControlUpdate(key, self.revision, record))

    @rule(key=keys, action=st.sampled_from([None, "raise", "pause"]))
    def kill(self, key: str, action: str | None) -> None:
        self._write(key, KillRecord(target=f"agent://{key}", action=action))  # type: ignore[arg-type]

    @rule(key=keys)
    def clear(self, key: str) -> None:
        if key in self.kv:
            self._write(key, None)

    # -- what reaches the instance --------------------------------------------------------------
    def _carry_out(self, effects: Effects) -> None:
        if effects.halt:
            self._halt()
        elif effects.resume:
            self.machine.resume()

    def _refresh(self) -> None:
        self._carry_out(self.machine.refresh(parked=False, sync_parked=False, pausing=False, closed=False))

    def _read(self, snapshot: dict[str, tuple[int, KillRecord | None]]) -> None:
        updates = [ControlUpdate(k, *snapshot.get(k, (0, None))) for k in KEYS]
        for u in updates:
            if u.revision:
                self.seen[u.key] = max(self.seen.get(u.key, 0), u.revision)
        if self.machine.apply(updates, from_kv=True) is not None:
            self._refresh()
        disputed = self.machine.take_disputed()
        if disputed:  # the driver asks the leader, which has the KV as it is now
            leader = [ControlUpdate(k, *self.kv.get(k, (0, None))) for k in disputed]
            if self.machine.apply(leader, from_kv=True, leader=True) is not None:
                self._refresh()

    def _deliver(self, update: ControlUpdate, *, real: bool) -> None:
        if update.record is None:
            self._read(self.kv)  # the driver confirms a pushed clear with a read of the KV
            return
        if real:
            self.seen[update.key] = max(self.seen.get(update.key, 0), update.revision)
        was_killed = self.machine.killed
        if self.machine.apply([update], from_kv=False) is not None:
            self._refresh()
        assert was_killed <= self.machine.killed, "a push lifted a kill"

    @precondition(lambda self: self.pushes)
    @rule(pick=st.integers(min_value=0), again=st.booleans())
    def deliver(self, pick: int, again: bool) -> None:
        update = self.pushes[pick % len(self.pushes)]
        if not again:
            self.pushes.remove(update)
        self._deliver(update, real=True)

    @precondition(lambda self: self.pushes)
    @rule(pick=st.integers(min_value=0))
    def lose_push(self, pick: int) -> None:
        self.pushes.pop(pick % len(self.pushes))

    @rule(key=keys, ahead=st.integers(min_value=1, max_value=1000), clear=st.booleans())
    def forged_push(self, key: str, ahead: int, clear: bool) -> None:
        record = None if clear else KillRecord(target="agent://forged/x/y")
        if not clear:
            self.forged.add(key)
        self._deliver(ControlUpdate(key, self.revision + ahead, record), real=False)

    @rule(from_follower=st.booleans())
    def read(self, from_follower: bool) -> None:
        """A read served by the leader (the KV now) or by a follower replica (as it was)."""
        self._read(self.history[self.follower] if from_follower else self.kv)

    @rule(steps=st.integers(min_value=1, max_value=3))
    def follower_catches_up(self, steps: int) -> None:
        self.follower = min(self.follower + steps, len(self.history) - 1)

    # -- the link and the loop ------------------------------------------------------------------
    @rule(lost=st.booleans())
    def link_back_or_frozen(self, lost: bool) -> None:
        if lost:
            self.pushes.clear()  # whatever was in flight during the outage is gone
        # Rule 3: whatever is in force now must be honoured before the next action.
        self.owed = {k: rev for k, (rev, rec) in self.kv.items() if rec is not None}
        self.machine.sync_started()

    @precondition(lambda self: self.machine.syncing)
    @rule()
    def resynced(self) -> None:
        self._read(self.kv)
        self.machine.sync_done()
        self._refresh()

    @rule()
    def no_contact_too_long(self) -> None:
        if self.machine.link_lost_too_long():
            self._refresh()

    # -- the agent ------------------------------------------------------------------------------
    def _halt(self) -> None:
        plan = self.machine.plan_halt()
        if plan is None:
            return
        self.machine.halting(plan)
        for r in plan.new:
            cid = r.record.command_id
            self.acks[cid] = self.acks.get(cid, 0) + 1
            self.machine.acknowledged(cid)

    @rule()
    def safe_point(self) -> None:
        verdict = self.machine.verdict()
        if verdict is Verdict.HALT:
            self._halt()
            return
        if verdict is Verdict.ACT:
            for key, (revision, record) in self.kv.items():
                if record is not None and self.seen.get(key, 0) >= revision:
                    raise AssertionError(f"acted while {key}@{revision}, which it had seen, is in force")
                if record is not None and self.owed.get(key) == revision:
                    raise AssertionError(f"acted after reconnecting before honouring {key}@{revision}")
        if not self.machine.killed:
            self.machine.resume()

    @rule()
    def settle(self) -> None:
        for update in sorted(self.pushes, key=lambda u: u.revision):
            self._deliver(update, real=True)
        self.pushes.clear()
        self._read(self.kv)
        self._read(self.kv)
        self.machine.sync_done()
        self._refresh()
        held = {(r.key, r.revision) for r in self.machine.in_force() if r.key not in self.forged}
        truth = {(k, rev) for k, (rev, rec) in self.kv.items() if rec is not None and k not in self.forged}
        assert held == truth, f"settled on {sorted(held)}, the KV holds {sorted(truth)}"
        revisions = [r.revision for r in self.machine.in_force()]
        assert revisions == sorted(revisions)

    # -- after every step -----------------------------------------------------------------------
    @invariant()
    def acted_only_when_free(self) -> None:
        if self.machine.verdict() is Verdict.ACT:
            assert not self.machine.in_force() and not self.machine.fail_closed and not self.machine.syncing

    @invariant()
    def every_kill_acknowledged_once(self) -> None:
        assert all(n == 1 for n in self.acks.values()), self.acks

    @invariant()
    def halted_means_a_status(self) -> None:
        if self.machine.halted:
            assert self.machine.status.value in ("paused", "killed")
        else:
            assert self.machine.status.value == "active"


KillContract.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_kill_contract = KillContract.TestCase


def _check_walk(rng: random.Random, steps: int, trace: list[str]) -> None:
    """One uniform random walk over the same rules, recording the steps it took in ``trace``."""
    model = KillContract()
    moves: list[tuple[str, Callable[[], None]]] = [
        ("kill", lambda: model.kill(rng.choice(KEYS), rng.choice([None, "raise", "pause"]))),
        ("clear", lambda: model.clear(rng.choice(KEYS))),
        ("forged_push", lambda: model.forged_push(rng.choice(KEYS), rng.randint(1, 5), rng.random() < 0.5)),
        ("read", lambda: model.read(rng.random() < 0.5)),
        ("follower_catches_up", lambda: model.follower_catches_up(rng.randint(1, 3))),
        ("link_back_or_frozen", lambda: model.link_back_or_frozen(rng.random() < 0.5)),
        ("no_contact_too_long", model.no_contact_too_long),
        ("safe_point", model.safe_point),
        ("settle", model.settle),
    ]
    for _ in range(steps):
        choices = list(moves)
        if model.pushes:
            choices.append(("deliver", lambda: model.deliver(rng.randrange(1000), rng.random() < 0.2)))
            choices.append(("lose_push", lambda: model.lose_push(rng.randrange(1000))))
        if model.machine.syncing:
            choices.append(("resynced", model.resynced))
        name, move = rng.choice(choices)
        trace.append(name)
        move()
        model.acted_only_when_free()
        model.every_kill_acknowledged_once()
        model.halted_means_a_status()


def test_random_walks_keep_the_contract() -> None:
    """Uniform random walks, which reach long specific sequences that shrinking search rarely builds."""
    for seed in range(EXAMPLES * 4):
        trace: list[str] = []
        try:
            _check_walk(random.Random(seed), 60, trace)
        except AssertionError as exc:
            raise AssertionError(f"seed {seed}: {exc}; last steps: {' > '.join(trace[-12:])}") from exc

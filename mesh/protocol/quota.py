"""Quota leases, the arithmetic (pure: no I/O): what a budget has granted, and how big the next slice is.

A *budget* is one counter limit of one policy, for one agent (``emails<=100/1h`` of policy ``cap``
on ``agent://acme/prod/mailer``). Its *ledger* lists the grants the controller made from it. A grant
is consumed when it is made: the instance may spend it, or give back what it did not spend. So the
invariant the controller keeps is simply *counted grants never exceed the limit*, and whatever the
instances spend out of their grants cannot exceed it either.

Rate windows. A grant made at ``at`` may be spent until its lease expires at ``at + ttl``; it keeps
counting against the budget until ``at + ttl + window``. Then any units spent in any window
``[t - window, t]`` were granted at most ``ttl`` before that window and are all still counted at the
latest of their grant times, where the invariant held: no sliding window ever sees more than the limit.
The price is that a unit frees up ``ttl`` later than a pure sliding window would free it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from mesh.protocol.policy import Limit

__all__ = [
    "MAX_LEASE_TTL",
    "SHARE",
    "Decision",
    "Grant",
    "Ledger",
    "Settled",
    "counted",
    "decide",
    "lease_ttl",
    "left",
    "planned",
    "prune",
    "release",
    "slice_size",
    "smallest",
]

#: Each live instance gets at most 1/(SHARE x live instances) of what is left: the slices halve as
#: the budget runs out, so the last units go one by one and no instance sits on a large share.
SHARE = 2
#: The longest a windowed lease may be held before it is spent or given back.
MAX_LEASE_TTL = 30.0
#: A windowed lease lives this share of the window at most (a 1 min window: 3 s leases).
TTL_SHARE_OF_WINDOW = 0.05
#: Closed windowed grants are merged into buckets this fine (a share of the window), their end
#: rounded *up* to the bucket's: a unit may count a little longer, never shorter, so the ledger
#: stays small however many refills a window sees.
BUCKETS_PER_WINDOW = 64


class Grant(BaseModel):
    """One slice granted to one instance. ``id`` is the request id: a retried request gets the same grant."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str = Field(min_length=1, max_length=64)
    instance: str = Field(max_length=64)
    amount: float = Field(ge=0)
    at: float
    #: When it stops counting against the budget (None: never, for limits without a window).
    counts_until: float | None = None
    #: Units given back unspent (final once ``closed``).
    returned: float = Field(default=0.0, ge=0)
    #: The instance has given the lease up: nothing more will be spent from it.
    closed: bool = False

    @property
    def charged(self) -> float:
        return max(0.0, self.amount - self.returned)


class Settled(BaseModel):
    """Closed grants of a rate window, merged: ``amount`` counts until ``counts_until``."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    counts_until: float
    amount: float = Field(ge=0)


class Ledger(BaseModel):
    """The value of one budget's key in the quota bucket, updated only by compare-and-set."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    v: int = 1
    policy: str
    agent_uri: str
    counter: str
    limit: Limit
    #: Closed grants of a limit without a window, folded into one number to keep the value small.
    settled: float = Field(default=0.0, ge=0)
    #: Closed grants of a rate window, merged into at most about BUCKETS_PER_WINDOW buckets.
    buckets: list[Settled] = Field(default_factory=list)
    grants: list[Grant] = Field(default_factory=list)
    #: What the controller observed as spent (from heartbeats) when it last wrote; for `mesh usage`.
    spent: float = Field(default=0.0, ge=0)
    updated_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one request against one budget."""

    ledger: Ledger
    amount: float
    #: The ledger changed and must be written (False for a retried request answered from the ledger).
    changed: bool
    #: Granted past the limit (only for budgets that do not enforce: alert or dry run).
    over: bool = False


def lease_ttl(limit: Limit) -> float | None:
    """How long a lease on this limit may be held: None (until given back) without a window."""
    if limit.window is None:
        return None
    return min(MAX_LEASE_TTL, limit.window * TTL_SHARE_OF_WINDOW)


def _counts(grant: Grant, now: float) -> bool:
    return grant.counts_until is None or grant.counts_until > now


def counted(ledger: Ledger, now: float) -> float:
    """Everything granted that still counts against the budget at ``now``."""
    merged = sum(b.amount for b in ledger.buckets if b.counts_until > now)
    return ledger.settled + merged + sum(g.charged for g in ledger.grants if _counts(g, now))


def left(ledger: Ledger, now: float) -> float:
    """What may still be granted at ``now`` (never negative)."""
    return max(0.0, ledger.limit.value - counted(ledger, now))


def _integral(*values: float) -> bool:
    return all(float(v).is_integer() for v in values)


def slice_size(limit: Limit, used: float, want: float, live: int) -> float:
    """The slice for a request of ``want`` when ``used`` is already counted: 0 if ``want`` does not fit.

    At least ``want``; otherwise 1/(SHARE x live) of the room left, in whole units when the request
    and the room are whole, and never so much that the limit would be broken.
    """
    if want <= 0 or not limit.allows(used + want):
        return 0.0
    room = limit.value - used
    share = room / (SHARE * max(1, live))
    if _integral(want, room):
        share = math.floor(share)
    amount = max(want, share)
    if not limit.allows(used + amount):
        amount = want  # the share would touch a strict '<' limit: fall back to what was asked
    return amount


def planned(ledger: Ledger, want: float, live: int, now: float) -> float:
    """The slice :func:`decide` would grant now (0: ``want`` does not fit), without granting it."""
    return slice_size(ledger.limit, counted(prune(ledger, now), now), want, live)


def prune(ledger: Ledger, now: float) -> Ledger:
    """Drop what no longer counts; fold closed grants into ``settled`` (no window) or buckets."""
    keep: list[Grant] = []
    settled = ledger.settled
    buckets = {b.counts_until: b.amount for b in ledger.buckets if b.counts_until > now}
    step = (ledger.limit.window or 0.0) / BUCKETS_PER_WINDOW
    for g in ledger.grants:
        if g.closed and g.counts_until is None:
            settled += g.charged
        elif not _counts(g, now):
            continue
        elif g.closed and g.counts_until is not None and step > 0:
            end = math.ceil(g.counts_until / step) * step
            buckets[end] = buckets.get(end, 0.0) + g.charged
        else:
            keep.append(g)
    merged = [Settled(counts_until=t, amount=a) for t, a in sorted(buckets.items())]
    if len(keep) == len(ledger.grants) and settled == ledger.settled and merged == ledger.buckets:
        return ledger
    return ledger.model_copy(update={"grants": keep, "settled": settled, "buckets": merged})


def decide(
    ledger: Ledger,
    *,
    request_id: str,
    instance: str,
    want: float,
    live: int,
    now: float,
    enforce: bool = True,
    amount: float | None = None,
) -> Decision:
    """Grant a slice to ``instance``, or nothing (``amount == 0``) when the budget cannot cover ``want``.

    ``amount`` asks for exactly that much (the smallest slice of several budgets on one counter);
    a budget that does not ``enforce`` (alert, dry run) grants ``want`` even past the limit, and
    says so with ``over``. A request id already in the ledger gets its grant again, unchanged.
    """
    for g in ledger.grants:
        if g.id == request_id:
            return Decision(ledger, g.amount, changed=False)
    ledger = prune(ledger, now)
    used = counted(ledger, now)
    size = slice_size(ledger.limit, used, want, live) if amount is None else amount
    if amount is not None and (amount < want or not ledger.limit.allows(used + amount)):
        size = 0.0
    over = False
    if size <= 0:
        if enforce:
            return Decision(ledger, 0.0, changed=False)
        size, over = (want if amount is None else amount), True
    ttl = lease_ttl(ledger.limit)
    window = ledger.limit.window
    grant = Grant(
        id=request_id,
        instance=instance,
        amount=size,
        at=now,
        counts_until=None if window is None or ttl is None else now + ttl + window,
    )
    updated = ledger.model_copy(update={"grants": [*ledger.grants, grant], "updated_at": now})
    return Decision(updated, size, changed=True, over=over)


def release(
    ledger: Ledger, grant_id: str, unspent: float, now: float, *, instance: str | None = None
) -> Ledger:
    """The instance gives up grant ``grant_id`` with ``unspent`` left: that much counts no more.

    Idempotent: a closed grant stays as it was. An unknown id (already pruned) changes nothing,
    and so does another instance's grant when ``instance`` says who is giving it up.
    """
    grants: list[Grant] = []
    changed = False
    for g in ledger.grants:
        if g.id == grant_id and not g.closed and (instance is None or g.instance == instance):
            back = min(g.amount, max(0.0, unspent))
            g = g.model_copy(update={"returned": back, "closed": True})
            changed = True
        grants.append(g)
    if not changed:
        return ledger
    return prune(ledger.model_copy(update={"grants": grants, "updated_at": now}), now)


def smallest(slices: Iterable[float]) -> float:
    """The amount a request gets from several budgets on one counter: what all of them can grant."""
    return min(slices, default=0.0)

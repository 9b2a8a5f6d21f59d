"""Quota leases, the controller's side: answer lease requests from the budgets' ledgers in the quota KV.

Only the active controller answers (a standby stays silent and the instance retries). Every ledger
change is a compare-and-set on the key's revision: a restarted or newly active controller starts
from what is stored, and a request retried across a takeover finds its grant by request id, so no
grant is lost or made twice. The arithmetic is :mod:`mesh.protocol.quota`; this module only carries it out.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from controller.enforce import Enforcer
from controller.policybook import PolicyBook
from controller.stats import RateLimitedLog, Stats
from mesh.errors import InvalidTarget, MalformedMessage, RevisionConflict
from mesh.protocol import quota
from mesh.protocol.codec import decode, encode
from mesh.protocol.leasewire import LeaseReply, LeaseRequest, Release
from mesh.protocol.policy import Limit, Policy
from mesh.protocol.subjects import Namespace
from mesh.protocol.target import AgentURI
from mesh.runtime.aio import raise_if_cancelling
from mesh.transport import kvops
from mesh.transport.natstypes import KeyValue, Msg

__all__ = ["UNLIMITED_RECHECK", "QuotaService"]

log = structlog.get_logger("controller.quota")

#: A counter no budget covers is asked about again after this long (a new policy applies by then).
UNLIMITED_RECHECK = 5.0
#: Compare-and-set attempts per request before it is left unanswered (the instance retries).
CAS_ATTEMPTS = 5


@dataclass(slots=True)
class _Budget:
    key: str
    policy: Policy
    limit: Limit
    ledger: quota.Ledger
    revision: int


class QuotaService:
    """The callback of the subscription to ``mesh.quota.>``; nats-py runs it one message at a time."""

    def __init__(
        self,
        ns: Namespace,
        kv: KeyValue,
        book: PolicyBook,
        enforcer: Enforcer,
        stats: Stats,
        *,
        live: Callable[[str], int],
        observed: Callable[[str, Limit], float],
        may_act: Callable[[], bool],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ns = ns
        self.kv = kv
        self.book = book
        self.enforcer = enforcer
        self.stats = stats
        self.live = live
        self.observed = observed
        self.may_act = may_act
        self.clock = clock
        #: key -> (ledger, revision) as last read or written; a failed compare-and-set drops it.
        self._cache: dict[str, tuple[quota.Ledger, int]] = {}
        self._warn = RateLimitedLog(log)

    async def on_message(self, msg: Msg) -> None:
        self.stats.lease_requests += 1
        try:
            agent, instance = self.ns.parse_quota_subject(msg.subject)
            req = decode(LeaseRequest, msg.data)
            if req.agent_uri != str(agent) or req.instance != instance:
                body = f"body says {req.agent_uri} instance {req.instance}"
                raise InvalidTarget(msg.subject, "subject", body)
        except (InvalidTarget, MalformedMessage) as exc:
            self.stats.bad_lease_requests += 1
            self._warn.warning("bad lease request", "bad", subject=msg.subject[:200], error=str(exc)[:300])
            return
        if not self.may_act() or not msg.reply:
            return  # not (or no longer) the active controller: the instance asks again
        try:
            # Just took over: never answer "unlimited" out of ignorance of the policies.
            if not self.book.loaded_once and not await self.book.refresh():
                return
            reply = await self.handle(agent, req)
        except Exception as exc:  # a bug or a stalled KV must not end the service: count, log, go on
            raise_if_cancelling()
            self._warn.warning("lease request failed", "failed", subject=msg.subject, error=repr(exc))
            return
        if reply is None:
            return
        try:
            await msg.respond(encode(reply))
        except Exception as exc:
            raise_if_cancelling()
            log.debug("lease reply not sent", error=str(exc) or type(exc).__name__)

    # -- decisions carried out --------------------------------------------------------------------
    def _budgets_for(self, agent: AgentURI, counter: str) -> list[tuple[str, Policy, Limit]]:
        out = []
        for policy in self.book.matching(agent):
            for limit in policy.budgets():
                if limit.counter == counter:
                    out.append((self.ns.budget_key(policy.name, counter, limit.window, agent), policy, limit))
        return out

    async def _load(self, key: str, policy: Policy, limit: Limit, agent: AgentURI) -> _Budget:
        cached = self._cache.get(key)
        if cached is None:
            entry = await kvops.get(self.kv, key)
            if entry is not None and entry.value is not None:
                cached = (decode(quota.Ledger, entry.value), entry.revision)
            else:  # never written, or deleted: a fresh ledger, written over the tombstone's revision
                fresh = quota.Ledger(
                    policy=policy.name, agent_uri=str(agent), counter=limit.counter, limit=limit
                )
                cached = (fresh, entry.revision if entry is not None else 0)
            self._cache[key] = cached
        ledger, revision = cached
        if ledger.limit != limit:  # the policy was edited: the new limit applies to what was granted
            ledger = ledger.model_copy(update={"limit": limit})
        return _Budget(key, policy, limit, ledger, revision)

    async def _store(self, b: _Budget, ledger: quota.Ledger) -> bool:
        """Compare-and-set; False (cache dropped) if somebody else wrote the key first."""
        data = encode(ledger)
        try:
            if b.revision == 0:
                revision = await kvops.create(self.kv, b.key, data)
            else:
                revision = await kvops.update(self.kv, b.key, data, b.revision)
        except RevisionConflict:
            self.stats.lease_conflicts += 1
            self._cache.pop(b.key, None)
            return False
        self._cache[b.key] = (ledger, int(revision))
        b.ledger, b.revision = ledger, int(revision)
        return True

    async def _release(self, agent: AgentURI, instance: str, rel: Release, now: float) -> None:
        for key, policy, limit in self._budgets_for(agent, rel.counter):
            for _ in range(CAS_ATTEMPTS):
                b = await self._load(key, policy, limit, agent)
                ledger = quota.release(b.ledger, rel.grant_id, rel.unspent, now, instance=instance)
                if ledger is b.ledger or await self._store(b, ledger):
                    break

    async def handle(self, agent: AgentURI, req: LeaseRequest) -> LeaseReply | None:
        """The answer to one request, ledgers written; None if compare-and-set kept failing."""
        now = self.clock()
        refilling = req.want > 0 and bool(req.counter)
        # The lease given up for the one being refilled is settled in the same ledger write.
        merged = [r for r in req.releases if refilling and r.counter == req.counter]
        for rel in req.releases:
            if rel not in merged:
                await self._release(agent, req.instance, rel, now)
        if not refilling:
            return LeaseReply(counter=req.counter, outcome="released")
        specs = self._budgets_for(agent, req.counter)
        if not specs:
            # fail_open: a counter no budget covered need not wait for a controller that is away.
            return LeaseReply(counter=req.counter, outcome="unlimited", ttl=UNLIMITED_RECHECK, fail_open=True)
        fail_open = all(p.on_unreachable == "proceed" for _, p, _ in specs)
        for _ in range(CAS_ATTEMPTS):
            budgets = [await self._load(key, p, lim, agent) for key, p, lim in specs]
            for b in budgets:
                for rel in merged:
                    b.ledger = quota.release(b.ledger, rel.grant_id, rel.unspent, now, instance=req.instance)
            reply = await self._grant(agent, req, budgets, now, fail_open)
            if reply is not None:
                return reply
        log.warning("lease request left unanswered after repeated conflicts", agent=str(agent))
        return None

    async def _grant(
        self, agent: AgentURI, req: LeaseRequest, budgets: list[_Budget], now: float, fail_open: bool
    ) -> LeaseReply | None:
        uri = str(agent)
        ttls = [t for t in (quota.lease_ttl(b.limit) for b in budgets) if t is not None]
        ttl = min(ttls) if ttls else None
        found = [g.amount for b in budgets for g in b.ledger.grants if g.id == req.request_id]
        if found:
            # A retry of a request we answered (the reply was lost, or we took over since):
            # the same grant again, charged to any budget that a crash left without it.
            amount = found[0]
        else:
            live = self.live(uri)
            enforcing = [b for b in budgets if b.policy.enforces]
            sizes = {id(b): quota.planned(b.ledger, req.want, live, now) for b in budgets}
            gone = [b for b in enforcing if sizes[id(b)] <= 0]
            if gone:
                for changed in budgets:  # the lease given back still goes back
                    if changed.ledger is not self._cache.get(changed.key, (None, 0))[0]:
                        await self._store(changed, changed.ledger)
                b = gone[0]
                granted = quota.counted(b.ledger, now)
                observed = granted + req.want
                reason = f"policy {b.policy.name}: {b.limit} exhausted (granted {granted:g})"
                self.stats.lease_denials += 1
                await self.enforcer.act(b.policy, agent, b.limit, observed, reason, now)
                return LeaseReply(
                    counter=req.counter,
                    outcome="denied",
                    policy=b.policy.name,
                    reason=reason,
                    fail_open=fail_open,
                )
            pool = enforcing or budgets
            amount = min(sizes[id(b)] or req.want for b in pool)
        for b in budgets:
            released = b.ledger is not self._cache.get(b.key, (None, 0))[0]
            decision = quota.decide(
                b.ledger,
                request_id=req.request_id,
                instance=req.instance,
                want=req.want,
                live=1,
                now=now,
                enforce=b.policy.enforces and not found,
                amount=amount,
            )
            if decision.amount <= 0:
                return None  # cannot happen (the amount fits every enforcing budget): re-read
            if decision.over and not b.policy.enforces:
                used = quota.counted(b.ledger, now)
                reason = f"policy {b.policy.name}: {b.limit} exceeded (granted {used + amount:g})"
                await self.enforcer.act(b.policy, agent, b.limit, used + amount, reason, now)
            if not decision.changed and not released:
                continue
            ledger = decision.ledger.model_copy(update={"spent": max(0.0, self.observed(uri, b.limit))})
            if not await self._store(b, ledger):
                return None  # re-read and try again: the grants written so far are found by id
        self.stats.lease_grants += 1
        return LeaseReply(
            counter=req.counter,
            outcome="granted",
            amount=amount,
            grant_id=req.request_id,
            ttl=ttl,
            fail_open=fail_open,
        )

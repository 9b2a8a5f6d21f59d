"""The client side of quota leases, shared by the SDK and the gateway: a wallet of leases, and refills.

:class:`Wallet` holds what an instance may spend without asking (no I/O, thread-safe: a sync agent
spends on the user's thread while refills land on the event loop). :class:`QuotaClient` asks the
controller for more, one bounded request at a time. What to do with a refusal (halt) or with no
answer (wait, or proceed unchecked) is the caller's business: :meth:`QuotaClient.obtain` says which.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import structlog

from mesh.errors import MalformedMessage
from mesh.protocol.codec import decode, encode
from mesh.protocol.leasewire import LeaseReply, LeaseRequest, Release
from mesh.protocol.models import new_id
from mesh.protocol.subjects import Namespace
from mesh.protocol.target import AgentURI
from mesh.runtime.aio import raise_if_cancelling
from mesh.transport.connection import Connection

__all__ = ["REQUEST_TIMEOUT", "Held", "QuotaClient", "Verdict", "Wallet"]

log = structlog.get_logger("mesh.leases")

#: How long one refill request waits for the controller (a refill takes about a millisecond).
REQUEST_TIMEOUT = 1.0


@dataclass(slots=True)
class Held:
    """One counter's lease: ``left`` to spend until ``expires`` (monotonic; None: no expiry)."""

    grant_id: str | None
    left: float
    expires: float | None
    unlimited: bool = False


class Wallet:
    """Leases in hand, per counter. :meth:`take` is the hot path: a lock and a few dict look-ups."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._held: dict[str, Held] = {}
        self._lock = threading.Lock()
        self._releases: list[Release] = []
        #: Per counter: units granted to us, units given back, units spent unchecked (fail-open).
        self.granted: dict[str, float] = {}
        self.released: dict[str, float] = {}
        self.unchecked: dict[str, float] = {}
        #: Per counter, what the last answer said to do without a controller (default: wait).
        self.fail_open: dict[str, bool] = {}
        #: Per counter, spent past what was granted (by :meth:`charge`): taken out of the next grant.
        self.debt: dict[str, float] = {}

    def take(self, counters: Mapping[str, float]) -> bool:
        """Spend ``counters`` from the leases in hand, all or nothing; False if one does not cover it."""
        now = self.clock()
        with self._lock:
            held = self._held
            for name, amount in counters.items():
                h = held.get(name)
                if h is None or type(amount) not in (int, float) or not amount >= 0:
                    return False  # unknown counter, or a value for the caller to refuse
                if h.left < amount or (h.expires is not None and now >= h.expires):
                    return False
            for name, amount in counters.items():
                h = held[name]
                if not h.unlimited:
                    h.left -= amount
            return True

    def missing(self, counters: Mapping[str, float]) -> list[str]:
        """The counters whose lease in hand cannot cover the amount asked."""
        now = self.clock()
        with self._lock:
            out = []
            for name, amount in counters.items():
                h = self._held.get(name)
                if h is None or h.left < amount or (h.expires is not None and now >= h.expires):
                    out.append(name)
            return out

    def take_unchecked(self, counters: Mapping[str, float]) -> None:
        """Fail-open: spend without a lease (counted, so that it shows)."""
        with self._lock:
            for name, amount in counters.items():
                self.unchecked[name] = self.unchecked.get(name, 0.0) + amount

    def charge(self, counter: str, amount: float) -> None:
        """Spend after the fact, for a cost known only once the action is done (the gateway's
        metered cost): the lease may go below zero, and the debt comes out of the next grant.

        Hold a lease before the action (``missing({counter: tiny})`` empty) and allow one action
        in flight per instance: then the overshoot is at most one action's cost per instance.
        """
        with self._lock:
            h = self._held.get(counter)
            if h is None:
                self.debt[counter] = self.debt.get(counter, 0.0) + amount
            elif not h.unlimited:
                h.left -= amount

    def left(self, counter: str) -> float:
        with self._lock:
            h = self._held.get(counter)
            return 0.0 if h is None else h.left

    def drop(self, counter: str) -> None:
        """Give up the lease on ``counter``; its remainder is returned with the next request."""
        with self._lock:
            self._drop(counter)

    def _drop(self, counter: str) -> None:
        h = self._held.pop(counter, None)
        if h is None or h.unlimited or h.grant_id is None:
            return
        if h.left < 0:
            self.debt[counter] = self.debt.get(counter, 0.0) - h.left
        unspent = max(0.0, h.left)
        self._releases.append(Release(counter=counter, grant_id=h.grant_id, unspent=unspent))
        self.released[counter] = self.released.get(counter, 0.0) + unspent

    def drop_all(self) -> None:
        with self._lock:
            for counter in list(self._held):
                self._drop(counter)

    def pending_releases(self) -> list[Release]:
        """Hand over the releases to send (put them back with :meth:`requeue` if sending failed)."""
        with self._lock:
            out, self._releases = self._releases, []
            return out

    def requeue(self, releases: list[Release]) -> None:
        with self._lock:
            self._releases[:0] = releases

    def install(self, reply: LeaseReply, sent_at: float) -> None:
        """Hold what ``reply`` grants. ``sent_at`` (monotonic, before the request left) starts the TTL,
        so the lease ends here no later than the controller counts it."""
        with self._lock:
            self.fail_open[reply.counter] = reply.fail_open
            if reply.outcome not in ("granted", "unlimited"):
                return
            self._drop(reply.counter)
            expires = None if reply.ttl is None else sent_at + reply.ttl
            if reply.outcome == "unlimited":
                self._held[reply.counter] = Held(None, math.inf, expires, unlimited=True)
                return
            owed = self.debt.pop(reply.counter, 0.0)
            self._held[reply.counter] = Held(reply.grant_id, reply.amount - owed, expires)
            self.granted[reply.counter] = self.granted.get(reply.counter, 0.0) + reply.amount


@dataclass(frozen=True, slots=True)
class Verdict:
    """What :meth:`QuotaClient.obtain` found: ``ok`` (take again), ``denied``, or ``unreachable``."""

    kind: Literal["ok", "denied", "unreachable"]
    reply: LeaseReply | None = None
    fail_open: bool = False


class QuotaClient:
    """Refills a :class:`Wallet` from the controller over NATS request/reply."""

    def __init__(
        self,
        conn: Callable[[], Connection | None],
        ns: Namespace,
        agent: AgentURI,
        instance: str,
        wallet: Wallet,
        *,
        request_timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        self._conn = conn
        self.wallet = wallet
        self.agent_uri = str(agent)
        self.instance = instance
        self.subject = ns.quota_subject(agent, instance)
        self.request_timeout = request_timeout
        #: Request id per counter, kept until an answer arrives: a retry is the same request.
        self._pending: dict[str, str] = {}
        #: One refill at a time: two concurrent ones would share a request id, so one grant
        #: would be installed twice (threads of a sync agent, tasks of an async one).
        self._refilling = asyncio.Lock()

    async def _ask(self, request: LeaseRequest) -> LeaseReply | None:
        conn = self._conn()
        if conn is None or not conn.is_connected:
            return None
        try:
            msg = await conn.nc.request(self.subject, encode(request), timeout=self.request_timeout)
            return decode(LeaseReply, msg.data)
        except MalformedMessage as exc:
            log.warning("ignored a malformed lease reply", error=str(exc))
            return None
        except Exception as exc:  # no responders, timeout, disconnected: no controller right now
            raise_if_cancelling()
            log.debug("lease request unanswered", subject=self.subject, error=str(exc) or type(exc).__name__)
            return None

    async def refill(self, counter: str, want: float) -> LeaseReply | None:
        """Ask once for at least ``want`` of ``counter``; None when no controller answered."""
        self.wallet.drop(counter)
        want += self.wallet.debt.get(counter, 0.0)  # what was spent past the last grant, first
        request_id = self._pending.setdefault(counter, new_id())
        releases = self.wallet.pending_releases()
        request = LeaseRequest(
            agent_uri=self.agent_uri,
            instance=self.instance,
            counter=counter,
            want=want,
            request_id=request_id,
            releases=releases,
        )
        sent_at = self.wallet.clock()
        reply = await self._ask(request)
        if reply is None:
            self.wallet.requeue(releases)
            return None
        self._pending.pop(counter, None)
        self.wallet.install(reply, sent_at)
        return reply

    async def obtain(self, counters: Mapping[str, float]) -> Verdict:
        """One refill for each counter the wallet cannot cover; stops at the first refusal or silence."""
        async with self._refilling:
            # Looked at under the lock: a concurrent refill may have covered us meanwhile.
            for name in self.wallet.missing(counters):
                reply = await self.refill(name, counters[name])
                if reply is None:
                    return Verdict("unreachable", fail_open=self.wallet.fail_open.get(name, False))
                if reply.outcome == "denied":
                    return Verdict("denied", reply)
            return Verdict("ok")

    async def release_all(self, timeout: float = 1.0) -> bool:
        """Give every lease back (on close); True if the controller took the releases."""
        self.wallet.drop_all()
        releases = self.wallet.pending_releases()
        if not releases:
            return True
        request = LeaseRequest(agent_uri=self.agent_uri, instance=self.instance, releases=releases)
        saved, self.request_timeout = self.request_timeout, timeout
        try:
            reply = await self._ask(request)
        finally:
            self.request_timeout = saved
        if reply is None:
            self.wallet.requeue(releases)
            return False
        return True

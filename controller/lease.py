"""The leader lease: one KV key whose value holds the holder and its expiry, taken and renewed by CAS."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from mesh.errors import RevisionConflict
from mesh.runtime.aio import raise_if_cancelling
from mesh.transport import kvops
from mesh.transport.natstypes import KeyValue

__all__ = ["LEASE_KEY", "Lease", "LeaseValue"]

log = structlog.get_logger("controller.lease")

LEASE_KEY = "controller"


@dataclass(frozen=True, slots=True)
class LeaseValue:
    holder: str
    expires_at: float

    def encode(self) -> bytes:
        return json.dumps({"holder": self.holder, "expires_at": self.expires_at}).encode()

    @classmethod
    def decode(cls, data: bytes | None) -> LeaseValue | None:
        try:
            raw = json.loads(data or b"")
            return cls(str(raw["holder"]), float(raw["expires_at"]))
        except (ValueError, KeyError, TypeError):
            return None


class Lease:
    """Acquire or renew with :meth:`step`; :attr:`held` says whether we may act right now.

    The bucket has no server TTL: expiry lives in the value, and every change is a
    compare-and-set on the key's revision, so two controllers can never both take it.
    We stop acting one third of a TTL before our own expiry, to leave room for clock skew.
    """

    def __init__(self, kv: KeyValue, holder: str, ttl: float, clock: Callable[[], float] = time.time) -> None:
        self.kv = kv
        self.holder = holder
        self.ttl = ttl
        self.clock = clock
        self.current: LeaseValue | None = None
        self._valid_until = 0.0

    @property
    def held(self) -> bool:
        return self.clock() < self._valid_until

    @property
    def current_holder(self) -> str | None:
        if self.current is None or self.current.expires_at < self.clock():
            return None
        return self.current.holder

    async def step(self) -> bool:
        """Try once to take or renew the lease; returns whether we hold it."""
        now = self.clock()
        mine = LeaseValue(self.holder, now + self.ttl)
        try:
            entry = await kvops.get(self.kv, LEASE_KEY)
            if entry is None or entry.value is None:
                await kvops.create(self.kv, LEASE_KEY, mine.encode())
                return self._took(mine, now)
            value = LeaseValue.decode(entry.value)
            self.current = value
            if value is not None and value.holder != self.holder and value.expires_at > now:
                self._valid_until = 0.0
                return False
            await kvops.update(self.kv, LEASE_KEY, mine.encode(), entry.revision)
            return self._took(mine, now)
        except RevisionConflict:
            self._valid_until = 0.0  # somebody else got there first
            return False
        except Exception as exc:
            raise_if_cancelling()
            # NATS unreachable: keep acting only until our own lease would have expired.
            log.debug("lease step failed", error=str(exc) or type(exc).__name__)
            return self.held

    async def release(self) -> None:
        """Give the lease up (expiry now), so that a standby takes over without waiting."""
        if not self.held:
            return
        self._valid_until = 0.0
        try:
            entry = await self.kv.get(LEASE_KEY)
            value = LeaseValue.decode(entry.value)
            if value is not None and value.holder == self.holder and entry.revision is not None:
                await self.kv.update(LEASE_KEY, LeaseValue(self.holder, 0.0).encode(), last=entry.revision)
        except Exception as exc:
            log.debug("lease release failed", error=str(exc) or type(exc).__name__)

    def _took(self, value: LeaseValue, now: float) -> bool:
        was = self.held
        self.current = value
        self._valid_until = now + self.ttl * 2 / 3
        if not was:
            log.info("lease acquired", holder=self.holder, ttl=self.ttl)
        return True

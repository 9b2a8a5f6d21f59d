"""Spending before the action: one instance's quota leases, and what a spend does when they run out.

The hot path (:meth:`AgentQuota.try_spend`) takes from the lease in hand with no round trip. The
slow path (:meth:`AgentQuota.acquire`, on the event loop) asks the controller for more; a budget
that is gone halts the instance through the kill path (the controller writes the policy's kill
record first, so the halt acknowledges it and names the policy); with no controller, it waits
(fail-closed) or goes on unchecked (fail-open), as the policy said in its last answer.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

import structlog

from mesh.errors import ConfigError, MeshTimeout
from mesh.transport.leases import QuotaClient, Wallet

if TYPE_CHECKING:
    from agent_sdk.core import AgentCore

__all__ = ["AgentQuota"]

log = structlog.get_logger("agent_sdk.quota")

#: Waits between refill attempts while the controller does not answer (doubling up to the max).
FIRST_WAIT = 0.05
MAX_WAIT = 1.0
#: After a refusal that the kill records do not (yet) show: wait this long, then ask again.
DENIED_WAIT = 0.2
UNCHECKED_LOG_EVERY = 10.0


class AgentQuota:
    """Owned by an :class:`AgentCore`; ``timeout`` bounds how long a spend waits for a controller."""

    def __init__(self, core: AgentCore, timeout: float | None = None) -> None:
        self.core = core
        self.timeout = timeout
        self.wallet = Wallet()
        self.client = QuotaClient(lambda: core.conn, core.ns, core.cfg.uri, core.cfg.instance, self.wallet)
        self._unchecked_logged = 0.0

    def try_spend(self, counters: Mapping[str, float]) -> bool:
        """The hot path: spend from the leases in hand (and count it as usage); False to go slow."""
        if self.wallet.take(counters):
            self.core.usage.add(counters)
            return True
        return False

    async def acquire(self, counters: Mapping[str, float]) -> None:
        """Spend ``counters``, refilling leases first; a safe point while it waits.

        Raises AgentKilled when the budget is gone (raise mode; pause mode pauses, then asks
        again after the resume), MeshTimeout when no controller answered within ``timeout``.
        """
        core = self.core
        wanted = {k: v for k, v in core.usage.validate(counters).items() if v > 0}
        if not wanted:
            return
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        wait = FIRST_WAIT
        while True:
            if core.closed:  # its connection is gone: waiting for a controller would never end
                raise ConfigError("spend() on a stopped agent")
            if core.attention.is_set() or core.stalled():
                await core.safe_point()
            if self.try_spend(wanted):
                return
            verdict = await self.client.obtain(wanted)
            if verdict.kind == "ok":
                wait = FIRST_WAIT
                continue
            if verdict.kind == "denied":
                # The controller wrote the policy's kill record before it answered: read it, so
                # that the halt goes through the kill path and names the policy.
                await core.resync()
                if core.killed:
                    await core.safe_point()
                    continue
                pause = DENIED_WAIT
            elif verdict.fail_open:
                self.wallet.take_unchecked(wanted)
                core.usage.add(wanted)
                self._note_unchecked(wanted)
                return
            else:
                pause, wait = wait, min(MAX_WAIT, wait * 2)
            if deadline is not None and time.monotonic() + pause > deadline:
                names = ", ".join(sorted(wanted))
                raise MeshTimeout(f"obtain a quota lease for {names}", self.timeout or 0.0)
            await core.wait_change(pause)

    def _note_unchecked(self, counters: Mapping[str, float]) -> None:
        now = time.monotonic()
        if now - self._unchecked_logged >= UNCHECKED_LOG_EVERY:
            self._unchecked_logged = now
            self.core.log.warning(
                "no controller: spending unchecked (the policy fails open)",
                counters=sorted(counters),
                unchecked=dict(self.wallet.unchecked),
            )

    async def close(self) -> None:
        """Give back what the leases still hold (best effort, bounded)."""
        conn = self.core.conn
        if conn is not None and conn.is_connected:
            await self.client.release_all(timeout=1.0)

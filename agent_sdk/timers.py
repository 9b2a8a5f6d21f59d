"""The instance's heartbeats and background tasks: checkpoint writer, heartbeat, re-read, fail-closed."""

from __future__ import annotations

import asyncio
import random
import time
from typing import TYPE_CHECKING, Any

from agent_sdk import events
from mesh.protocol.codec import encode
from mesh.protocol.models import Heartbeat, Status
from mesh.runtime.aio import raise_if_cancelling

if TYPE_CHECKING:
    from agent_sdk.core import AgentCore

__all__ = ["Timers"]


class Timers:
    """Heartbeats, and the tasks that run while the instance does (cancelled by :meth:`stop`)."""

    def __init__(self, core: AgentCore) -> None:
        self.core = core
        self._seq = 0
        self._tasks: list[asyncio.Task[Any]] = []

    def start(self) -> None:
        core = self.core
        self._tasks = [asyncio.create_task(core.ckpt.run_writer(), name="agent-sdk checkpoints")]
        if core.router is None:  # on a shared connection the router beats and re-reads for all
            self._tasks.append(asyncio.create_task(self._heartbeat_loop(), name="agent-sdk heartbeat"))
            self._tasks.append(asyncio.create_task(self._resync_loop(), name="agent-sdk resync"))
        else:
            core.router.beat_for(core)
        if core.cfg.fail_closed_after is not None:
            self._tasks.append(asyncio.create_task(self._fail_closed_loop(), name="agent-sdk fail-closed"))

    async def stop(self, timeout: float) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            # Bounded: leaving the agent must not hang on a task stuck in a stalled server call.
            await asyncio.wait(self._tasks, timeout=timeout)

    # -- heartbeats -------------------------------------------------------------------------------
    def heartbeat_message(self, status: Status | None = None) -> Heartbeat:
        core = self.core
        self._seq += 1
        return events.heartbeat(
            core.cfg,
            status=status or core.status,
            seq=self._seq,
            started_at=core.started_at,
            metadata=dict(core.metadata),
            kill_keys=[r.key for r in core.in_force()],
            usage=core.usage.snapshot()[1],
        )

    async def send_heartbeat(self) -> None:
        core = self.core
        conn = core.conn
        if conn is None or not conn.is_connected:
            return
        hb = self.heartbeat_message()
        try:
            await conn.nc.publish(core.ns.heartbeat_subject(core.cfg.uri, core.cfg.instance), encode(hb))
        except Exception as exc:  # heartbeats are best effort; the next one follows
            raise_if_cancelling()
            core.log.debug("heartbeat not sent", error=str(exc) or type(exc).__name__)

    async def beat(self) -> None:
        """One heartbeat interval's work (from our own timer, or a shared connection's)."""
        core = self.core
        core.escalation.tick = time.monotonic()  # proof for the watchdog that our loop runs
        await self.send_heartbeat()
        # Usage totals are stored at most once per interval, so a restart loses at most that.
        if core.ckpt.usage_dirty:
            core.ckpt.wake()

    # -- loops --------------------------------------------------------------------------------------
    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.core.cfg.heartbeat_interval)
            await self.beat()

    async def _resync_loop(self) -> None:
        # A missed republish (or a dead subscription) must not leave us unkillable.
        # Jittered (±20 %), so that a fleet started together does not re-read in lockstep.
        while True:
            await asyncio.sleep(self.core.cfg.resync_interval * random.uniform(0.8, 1.2))
            await self.core.feed.resync()

    async def _fail_closed_loop(self) -> None:
        core = self.core
        limit = core.cfg.fail_closed_after
        assert limit is not None
        while True:
            await asyncio.sleep(min(0.5, limit / 4))
            conn = core.conn
            if conn is not None and conn.is_connected and not core.machine.syncing:
                core.last_contact = time.monotonic()
            elif time.monotonic() - core.last_contact > limit and core.machine.link_lost_too_long():
                core.log.warning("no contact with NATS; halting (fail_closed_after)", seconds=limit)
                core.refresh()

"""After a gap (the link lost and back, a frozen loop): gate safe points until the records are re-read."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from mesh.runtime.aio import raise_if_cancelling

if TYPE_CHECKING:
    from agent_sdk.core import AgentCore

__all__ = ["SYNC_WAIT", "ResyncGate"]

#: How long a safe point waits for the post-reconnect re-read before acting on what it knows.
SYNC_WAIT = 5.0


class ResyncGate:
    """Until the kill records are re-read, a kill written during the gap must win over any
    guarded action (rule 3): the machine is told a sync started, and safe points wait for it."""

    def __init__(self, core: AgentCore) -> None:
        self.core = core

    async def on_disconnect(self) -> None:
        self.core.log.warning("disconnected from NATS")

    def gate_now(self) -> None:
        """The connection is back (nats-py has not told its callbacks yet): gate safe points now;
        the re-read itself starts in :meth:`on_reconnect`."""
        if not self.core.closed:
            self.core.machine.sync_started()
            self.core.update_attention()

    async def on_reconnect(self) -> None:
        # Never block nats-py here: the re-read runs in a task of its own.
        self.core.machine.sync_started()
        self.core.update_attention()
        self.core.spawn(self.resync_after("reconnect"))

    def on_freeze(self) -> None:
        """The loop's liveness ticker saw a freeze: gate safe points, re-read the records."""
        core = self.core
        if core.closed or core.machine.syncing or core.conn is None:
            return
        core.log.info("agent was frozen or its loop blocked; re-reading kill records")
        core.machine.sync_started()
        core.update_attention()
        core.spawn(self.resync_after("a freeze"))

    async def gate_and_resync(self, why: str) -> None:
        """Hold every safe point until the kill records are re-read from the KV."""
        core = self.core
        if core.machine.syncing:
            while core.machine.syncing and not core.closed:
                await core.wait_change(SYNC_WAIT)
            return
        core.machine.sync_started()
        core.update_attention()
        await self.resync_after(why)

    async def resync_after(self, why: str) -> None:
        core = self.core
        try:
            while not core.closed:
                assert core.conn is not None
                with contextlib.suppress(Exception):
                    await core.conn.nc.flush(timeout=2)
                raise_if_cancelling()
                if await core.feed.resync():
                    break
                await asyncio.sleep(0.2)
        finally:
            core.machine.sync_done()
            core.log.info("re-synced kill records", after=why, killed=bool(core.in_force()))
            core.refresh()
        if core.ckpt.dirty:
            core.ckpt.wake()

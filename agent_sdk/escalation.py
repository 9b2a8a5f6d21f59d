"""The kill's last resort: past a record's grace with no safe point reached, report and end the process."""

from __future__ import annotations

import asyncio
import functools
import os
import time
from typing import TYPE_CHECKING

from agent_sdk import events
from agent_sdk.config import TERMINATED_EXIT_CODE
from agent_sdk.killstate import InForce
from agent_sdk.watchdog import schedule
from mesh.protocol.codec import encode
from mesh.protocol.models import EventType, Status
from mesh.transport.audit import AuditChain, publish_event
from mesh.transport.connection import Connection
from mesh.transport.control import read_records

if TYPE_CHECKING:
    from agent_sdk.core import AgentCore

__all__ = ["Escalation"]

#: Bound on the `terminated` publish during escalation, before the process ends regardless.
TERMINATE_PUBLISH_TIMEOUT = 2.0


class Escalation:
    """Runs on the watchdog thread (agent_sdk.watchdog), never on the agent's loop.

    Two ways in: a record's grace ran out (scheduled when the record is first seen), or the
    agent's loop is blocked, so the watchdog reads the records with a client of its own.
    """

    def __init__(self, core: AgentCore) -> None:
        self.core = core
        #: Last time the loop ran the heartbeat timer; a stale tick means user code blocks it.
        self.tick = time.monotonic()
        self._stall_escalating: set[str] = set()

    def schedule(self, held: InForce) -> None:
        schedule(held.record.grace, functools.partial(self.due, held.record.command_id))

    def due(self, command_id: str) -> None:
        core = self.core
        if core.closed:
            return
        held = core.machine.escalation_due(command_id)
        if held is not None:
            self.terminate(held)

    # -- a blocked loop --------------------------------------------------------------------------
    @property
    def stall_after(self) -> float:
        return 2 * self.core.cfg.heartbeat_interval + 0.5

    def stalled(self) -> bool:
        return time.monotonic() - self.tick > self.stall_after

    def watch(self) -> None:
        schedule(self.stall_after, self.check_stall)

    def check_stall(self) -> None:
        """Watchdog thread: while the user's loop is blocked, look for kills with our own client."""
        core = self.core
        if core.closed:
            return
        self.watch()
        if not self.stalled():
            return
        try:
            held = asyncio.run(self._read_out_of_band())
        except Exception as exc:
            core.log.warning("event loop blocked and kill records unreadable", error=repr(exc))
            return
        for r in held:
            cid = r.record.command_id
            if not core.machine.reached(cid) and cid not in self._stall_escalating:
                self._stall_escalating.add(cid)
                core.log.warning("kill seen while the event loop is blocked", command_id=cid)
                schedule(r.record.grace, functools.partial(self._due_stalled, r))

    async def _read_out_of_band(self) -> list[InForce]:
        core = self.core
        conn = await Connection.open(core.cfg.settings, name="agent-sdk watchdog")
        try:
            kv = await conn.js.key_value(core.ns.control_bucket)
            updates = await read_records(kv, sorted(core.machine.keys))
        finally:
            await conn.close(timeout=1.0)
        return [InForce(u.key, u.revision, u.record) for u in updates if u.record is not None]

    def _due_stalled(self, held: InForce) -> None:
        cid = held.record.command_id
        if self.core.closed or self.core.machine.reached(cid):
            return
        if not self.stalled():  # the loop is back: the normal path sees the kill and escalates
            self._stall_escalating.discard(cid)
            return
        self.terminate(held)

    # -- the end ---------------------------------------------------------------------------------
    def terminate(self, held: InForce) -> None:
        """Report ``terminated`` (bounded), then end the process."""
        core = self.core
        core.log.error(
            "no safe point within the kill's grace; terminating the process",
            grace=held.record.grace,
            command_id=held.record.command_id,
            exit_code=TERMINATED_EXIT_CODE,
        )
        done = False
        loop = core.loop
        if loop is not None and loop.is_running() and not self.stalled():
            future = asyncio.run_coroutine_threadsafe(self._report(held, core.conn), loop)
            try:
                future.result(TERMINATE_PUBLISH_TIMEOUT)
                done = True
            except Exception:  # the loop is blocked too (a stuck AsyncAgent): use our own
                future.cancel()
        if not done:
            try:
                asyncio.run(self._report(held, None))
            except Exception as exc:
                core.log.error("could not report termination", error=repr(exc))
        os._exit(TERMINATED_EXIT_CODE)

    async def _report(self, held: InForce, conn: Connection | None) -> None:
        core = self.core
        own = conn is None or not conn.is_connected
        if own:
            conn = await Connection.open(core.cfg.settings, name="agent-sdk terminate")
        assert conn is not None
        try:
            core.machine.status = Status.TERMINATED
            seq, checkpoint = core.ckpt.stored()  # no flush: the process ends within a second
            event = events.ack_event(
                core.cfg,
                EventType.TERMINATED,
                held,
                status="terminated",
                metadata=dict(core.metadata),
                checkpoint=checkpoint,
                checkpoint_seq=seq,
            )
            # On our own loop the instance's chain continues; from a rescue loop (ours is stuck,
            # maybe inside a publish holding the chain) the event starts a chain of its own.
            chain = core.audit_chain if conn is core.conn else AuditChain()
            await publish_event(conn.js, core.ns, event, timeout=1.0, attempts=1, chain=chain)
            hb = core.heartbeat_message(Status.TERMINATED)
            await conn.nc.publish(core.ns.heartbeat_subject(core.cfg.uri, core.cfg.instance), encode(hb))
            await conn.nc.flush(timeout=1)
        finally:
            if own:
                await conn.close(timeout=1.0)

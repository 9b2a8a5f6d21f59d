"""Halting I/O: store the checkpoint, acknowledge the records in force, pause, report a resume."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from agent_sdk import events
from agent_sdk.killmachine import HaltPlan
from agent_sdk.killstate import InForce
from mesh.errors import MeshError
from mesh.protocol.models import AuditEvent, EventType
from mesh.runtime import tracing

if TYPE_CHECKING:
    from agent_sdk.core import AgentCore

__all__ = ["Halting"]


class Halting:
    """Carries out the halts the kill machine plans, one at a time."""

    def __init__(self, core: AgentCore) -> None:
        self.core = core
        self._lock = asyncio.Lock()
        #: Safe points blocked in a pause, waiting for the records to clear.
        self.paused_waiters = 0

    async def halt(self) -> None:
        """Flush the checkpoint, then acknowledge every record in force not yet acknowledged."""
        core = self.core
        async with self._lock:
            plan = core.machine.plan_halt()
            if plan is None:
                return
            unwinding = core.guarded.unwinding()
            if unwinding:  # let cancelled guarded calls unwind before we say we have stopped
                grace = min((r.record.grace for r in core.in_force()), default=1.0)
                await core.guarded.wait_unwound(unwinding, grace)
            core.machine.halting(plan)
            if not plan.new:
                await core.ckpt.flush()
            else:
                await self._acknowledge(plan)
            await core.timers.send_heartbeat()

    async def _acknowledge(self, plan: HaltPlan) -> None:
        core = self.core
        metadata = dict(core.metadata)
        # The checkpoint first, then the acks carrying what is stored: were they pipelined, a put
        # refused during an election (a 503) could leave an ack promising more than a restart restores.
        await core.ckpt.flush()
        seq, checkpoint = core.ckpt.stored()
        status = plan.status.value
        # Traced kills only (agent-mesh[otel]): one span per record, under the kill's.
        spans = [self._span(r, status) if r.record.trace else None for r in plan.new]
        acks = [
            events.ack_event(
                core.cfg,
                EventType.HALTED,
                r,
                status=status,
                metadata=metadata,
                checkpoint=checkpoint,
                checkpoint_seq=seq,
                trace=tracing.carrier(span),
            )
            for r, span in zip(plan.new, spans, strict=True)
        ]
        results = await self._send(acks)
        for r, result, span in zip(plan.new, results, spans, strict=True):
            tracing.end(span, **{"mesh.acked": not isinstance(result, BaseException)})
            if isinstance(result, BaseException):
                core.log.warning("halt ack failed; will retry", command_id=r.record.command_id)
            else:
                core.machine.acknowledged(r.record.command_id)
                core.log.info(
                    "halt acknowledged",
                    status=status,
                    command_id=r.record.command_id,
                    revision=r.revision,
                    key=r.key,
                )

    def _span(self, held: InForce, status: str) -> Any:
        return tracing.start(
            "mesh.instance.halt",
            held.record.trace,
            {
                "mesh.agent_uri": str(self.core.cfg.uri),
                "mesh.instance": self.core.cfg.instance,
                "mesh.command_id": held.record.command_id,
                "mesh.status": status,
            },
        )

    async def _send(self, acks: list[AuditEvent]) -> list[BaseException | None]:
        """Publish the acks (JetStream, acknowledged); per ack, None or the exception it raised."""
        if len(acks) == 1:
            try:
                await self.core.emit(acks[0])
            except Exception as exc:
                return [exc]
            return [None]
        results = await asyncio.gather(*(self.core.emit(a) for a in acks), return_exceptions=True)
        return [r if isinstance(r, BaseException) else None for r in results]

    async def pause_until_clear(self) -> None:
        core = self.core
        self.paused_waiters += 1
        try:
            while core.killed:
                if core.closed:  # stop() from another thread: do not hold the caller forever
                    raise core.killed_error()
                await core.wait_change()
                if core.killed:
                    await self.halt()
                    if core.mode() == "raise":
                        raise core.killed_error()
        finally:
            self.paused_waiters -= 1
        await self.publish_resumed()

    async def publish_resumed(self) -> None:
        core = self.core
        if not core.machine.resume():
            return
        core.log.info("resumed")
        try:
            # The acknowledgement first; the status heartbeat must not delay it.
            await core.emit(
                events.lifecycle_event(
                    core.cfg, EventType.RESUMED, data={"checkpoint_seq": core.ckpt.written_seq or None}
                )
            )
        except MeshError as exc:
            core.log.warning("could not record resume", error=str(exc))
        finally:
            await core.timers.send_heartbeat()

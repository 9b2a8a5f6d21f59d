"""Shared by the framework integration tests: the agent under test, a tool's log, and the kill moves."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any, Protocol

from agent_sdk import AsyncAgent
from mesh.protocol.models import AuditEvent, KillRecord
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection
from tests.integration.sdk_helpers import DEADLINE, audit_events, await_until, put_kill


def guarded_agent(uri: str, settings: Settings, instance: str, on_kill: str) -> AsyncAgent:
    """The agent a framework runs under: a soft kill (no process exit), ``on_kill`` pause or raise."""
    return AsyncAgent(uri, instance=instance, settings=settings, hard_kill=False, on_kill=on_kill)


class ToolLog:
    """What the tool did: ("start", n), ("end", n), ("cancelled", n), each with its wall-clock time.

    ``block`` holds a call to step n mid-way (once: its re-run after a resume goes through).
    """

    def __init__(self) -> None:
        self.events: list[tuple[str, int, datetime]] = []
        self.block: set[int] = set()
        self.running = asyncio.Event()

    def ends(self) -> list[int]:
        return [n for kind, n, _ in self.events if kind == "end"]

    def starts(self) -> list[int]:
        return [n for kind, n, _ in self.events if kind == "start"]

    def add(self, kind: str, n: int) -> None:
        self.events.append((kind, n, datetime.now(UTC)))

    def started_after(self, when: datetime) -> list[int]:
        return [n for kind, n, t in self.events if kind == "start" and t > when]

    async def work(self, n: int) -> str:
        """The body of each framework's ``work`` tool: step n, logged (held mid-way if blocked)."""
        self.add("start", n)
        if n in self.block:
            self.block.discard(n)
            self.running.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.add("cancelled", n)
                await asyncio.sleep(0.01)  # sleep-ok: unwinding takes a moment, as closing a connection would
                raise
        self.add("end", n)
        return f"step {n} done"


class HeldModel(Protocol):
    """A fake model whose ``hold_at`` call sets ``entered`` and waits for ``release``."""

    entered: Any
    release: Any


async def kill_while_thinking(
    conn: Connection, mesh: AsyncAgent, model: HeldModel, uri: str
) -> tuple[str, KillRecord]:
    """Once the model is held in a call: kill, wait until the agent knows, let the model answer."""
    await asyncio.wait_for(model.entered.wait(), 30)
    key, _, record = await put_kill(conn, uri)
    await await_until(lambda: mesh.killed)
    model.release.set()
    return key, record


async def kill_mid_tool(conn: Connection, log: ToolLog, uri: str, **kill: Any) -> tuple[str, KillRecord]:
    """Once a blocked tool call is running: kill (``kill``: the kill's fields, e.g. ``grace``)."""
    await asyncio.wait_for(log.running.wait(), 30)
    key, _, record = await put_kill(conn, uri, **kill)
    return key, record


async def wait_ack(conn: Connection, command_id: str, timeout: float = DEADLINE) -> AuditEvent:
    """The halted acknowledgement of ``command_id`` (polled from the audit stream, with a deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        acks = [e for e in await audit_events(conn, "halted") if e.command_id == command_id]
        if acks:
            assert len(acks) == 1, acks
            return acks[0]
        assert time.monotonic() < deadline, "no halted acknowledgement"
        # sleep-ok: the poll interval: the loop re-checks until the condition holds or the deadline passes
        await asyncio.sleep(0.02)

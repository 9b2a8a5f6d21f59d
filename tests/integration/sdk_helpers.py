"""Helpers for the SDK tests: kill and resume through the operator API, read the audit stream, poll."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from anyio.from_thread import BlockingPortal, start_blocking_portal

from mesh.client.operator import AsyncMesh
from mesh.protocol.codec import decode
from mesh.protocol.models import AuditEvent, KillRecord
from mesh.protocol.subjects import key_to_target
from mesh.protocol.target import parse_target
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection
from mesh.transport.provision import provision

DEADLINE = 30.0


def wait_until(pred: Callable[[], Any], timeout: float = DEADLINE, what: str = "condition") -> Any:
    """Poll ``pred`` until it is truthy; generous deadline, no timing assertion."""
    end = time.monotonic() + timeout
    while True:
        value = pred()
        if asyncio.iscoroutine(value):  # a coroutine is always truthy: it would pass at once
            value.close()
            raise TypeError(f"wait_until got an async predicate for {what}: use await_until")
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        # sleep-ok: the poll interval: the loop re-checks until the condition holds or the deadline passes
        time.sleep(0.01)


async def await_until(pred: Callable[[], Any], timeout: float = DEADLINE, what: str = "condition") -> Any:
    end = time.monotonic() + timeout
    while True:
        value = pred()
        if asyncio.iscoroutine(value):  # an async predicate: its answer, not the coroutine, counts
            value = await value
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        # sleep-ok: the poll interval: the loop re-checks until the condition holds or the deadline passes
        await asyncio.sleep(0.01)


_OPERATORS: dict[int, AsyncMesh] = {}


async def _operator(conn: Connection) -> AsyncMesh:
    """One operator client per connection (it hooks the connection's error callback once)."""
    mesh = _OPERATORS.get(id(conn))
    if mesh is None or mesh.connection is not conn:
        mesh = await AsyncMesh(connection=conn).connect()
        _OPERATORS[id(conn)] = mesh
    return mesh


async def put_kill(
    conn: Connection, target: str, instance: str | None = None, **fields: Any
) -> tuple[str, int, KillRecord]:
    """Kill through the operator API (``AsyncMesh.kill``, no wait for acks); the stored record back."""
    t = parse_target(target, instance)
    report = await (await _operator(conn)).kill(t, wait=0, **fields)
    key = conn.ns.control_key(t)
    kv = await conn.js.key_value(conn.ns.control_bucket)
    entry = await kv.get(key, revision=report.revision)
    assert entry.value is not None
    record = decode(KillRecord, entry.value)
    assert record.command_id == report.command_id
    return key, report.revision, record


async def delete_kill(conn: Connection, key: str) -> None:
    """Resume through the operator API: clears exactly the record under ``key`` (if any)."""
    await (await _operator(conn)).resume(key_to_target(key), wait=0)


async def audit_events(
    conn: Connection, etype: str | None = None, instance: str | None = None
) -> list[AuditEvent]:
    """Every event in this namespace's audit stream, optionally filtered."""
    info = await conn.js.stream_info(conn.ns.audit_stream)
    out: list[AuditEvent] = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        if not seq:
            continue
        msg = await conn.js.get_msg(conn.ns.audit_stream, seq)
        assert msg.data is not None
        event = decode(AuditEvent, msg.data)
        if (etype is None or event.type.value == etype) and (instance is None or event.instance == instance):
            out.append(event)
    return out


class Ops:
    """A synchronous operator for tests that drive the sync ``Agent``: its own loop thread."""

    def __init__(self, settings: Settings) -> None:
        self._cm: AbstractContextManager[BlockingPortal] = start_blocking_portal()
        self.portal = self._cm.__enter__()
        self.conn: Connection = self.portal.call(self._open, settings)

    @staticmethod
    async def _open(settings: Settings) -> Connection:
        conn = await Connection.open(settings, name="sdk-test-ops")
        await provision(conn.js, conn.ns)
        return conn

    def kill(self, target: str, instance: str | None = None, **fields: Any) -> tuple[str, int, KillRecord]:
        return self.portal.call(lambda: put_kill(self.conn, target, instance, **fields))

    def resume(self, key: str) -> None:
        self.portal.call(delete_kill, self.conn, key)

    def events(self, etype: str | None = None, instance: str | None = None) -> list[AuditEvent]:
        return self.portal.call(audit_events, self.conn, etype, instance)

    def acks(self, command_id: str) -> list[AuditEvent]:
        return [e for e in self.events("halted") if e.command_id == command_id]

    def publish(self, subject: str, data: bytes, headers: dict[str, str] | None = None) -> None:
        async def go() -> None:
            await self.conn.nc.publish(subject, data, headers=headers)
            await self.conn.nc.flush()

        self.portal.call(go)

    def close(self) -> None:
        try:
            self.portal.call(self.conn.close)
        finally:
            self._cm.__exit__(None, None, None)


class AgentPool:
    """Starts sync agents for a test and stops whatever is still running at teardown."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.agents: list[Any] = []

    def start(self, uri: str = "agent://acme/prod/mailer", **kwargs: Any) -> Any:
        from agent_sdk import Agent

        kwargs.setdefault("hard_kill", False)  # an in-process escalation would end pytest
        kwargs.setdefault("heartbeat_interval", 0.5)
        agent = Agent(uri, settings=self.settings, **kwargs).start()
        self.agents.append(agent)
        return agent

    def close(self) -> None:
        for agent in self.agents:
            # Teardown of an agent that a test already stopped or broke.
            with contextlib.suppress(Exception):
                agent.stop()


def resync(agent: Any) -> None:
    """Make a sync agent re-read its records now (what its periodic health check does)."""
    agent._portal.call(agent._core.resync)

"""Shared pieces of the chaos tests: a fleet of real SDK agents with work loops, polling, audit reads."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import nats.errors

from agent_sdk import AgentKilled, AsyncAgent
from mesh.protocol.codec import decode
from mesh.protocol.models import AuditEvent, Checkpoint, EventType
from mesh.protocol.subjects import Namespace
from mesh.protocol.target import parse_agent_uri
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection


async def eventually(check: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
    """Poll until ``check()`` (sync or async) is truthy: a generous deadline, never a timing assertion."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if asyncio.iscoroutine(last):
                last = await last
        except Exception as exc:  # e.g. a read while the server restarts: try again
            last = exc
        else:
            if last:
                return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


class Worker:
    """One real AsyncAgent (pause on kill) whose loop heartbeats, checkpoints and counts units of work."""

    def __init__(self, settings: Settings, uri: str, instance: str, *, interval: float = 0.3) -> None:
        self.uri, self.instance = uri, instance
        self.agent = AsyncAgent(
            uri,
            instance=instance,
            settings=settings,
            on_kill="pause",
            hard_kill=False,
            heartbeat_interval=interval,
        )
        self.done = 0
        self.checkpointed = 0
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> Worker:
        await self.agent.start()
        self.task = asyncio.create_task(self._loop())
        return self

    async def _loop(self) -> None:
        with contextlib.suppress(AgentKilled, asyncio.CancelledError):
            while True:
                await self.agent.heartbeat({"done": self.done})
                self.done += 1
                await self.agent.checkpoint({"done": self.done})
                self.checkpointed = self.done
                await self.agent.sleep(0.02)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.agent.stop(), 15)


async def start_fleet(settings: Settings, members: list[tuple[str, str]], **kw: Any) -> list[Worker]:
    workers = [Worker(settings, uri, inst, **kw) for uri, inst in members]
    await asyncio.gather(*(w.start() for w in workers))
    await eventually(lambda: all(w.done > 2 for w in workers), what="the fleet to be working")
    return workers


async def stop_fleet(workers: list[Worker]) -> None:
    await asyncio.gather(*(w.stop() for w in workers))


def offline(workers: list[Worker]) -> bool:
    """Every worker's connection has noticed that its server is gone."""
    return all(not (c := w.agent._core.conn) or not c.is_connected for w in workers)


def left(workers: list[Worker], url: str) -> bool:
    """Every worker has noticed that the server at ``url`` is gone: it is offline or, in a
    cluster, already connected to another node (a failover can take less than one poll)."""
    port = urlsplit(url).port

    def away(w: Worker) -> bool:
        c = w.agent._core.conn
        if not c or not c.is_connected:
            return True
        now = c.nc.connected_url
        return now is not None and now.port != port

    return all(away(w) for w in workers)


async def stalled(workers: list[Worker], witness: Worker | None = None, turns: int = 3) -> bool:
    """Every worker is killed and its loop no longer advances, while the loop had the chance to.

    The proof of that chance: ``witness`` (an untargeted worker on the same event loop, whose
    units of work each heartbeat and checkpoint over NATS) completes ``turns`` more units; with
    no witness, a ticker on the same loop makes ``turns`` of the workers' own 0.02 s pauses.
    """
    if not all(w.agent.killed for w in workers):
        return False
    before = [w.done for w in workers]
    if witness is not None:
        mark = witness.done
        await eventually(lambda: witness.done >= mark + turns, what="the witness to keep working")
    else:
        await loop_turns(turns)
    return [w.done for w in workers] == before


async def loop_turns(turns: int, every: float = 0.02) -> None:
    """Let the event loop run ``turns`` pauses of the work loops' length, counted, not slept."""
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            # sleep-ok: one tick: loop_turns counts these pauses of a work loop's length
            await asyncio.sleep(every)
            ticks += 1

    task = asyncio.create_task(tick())
    try:
        await eventually(lambda: ticks >= turns, what=f"{turns} turns of the event loop")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def all_events(settings: Settings, attempts: int = 4) -> list[AuditEvent]:
    """Every event in the audit stream, oldest first (an ordered consumer, raw).

    While a cluster re-elects stream leaders after a node died, a read can stall: retry it
    from the start, as an operator would.
    """
    for attempt in range(attempts):
        try:
            return await _read_all_events(settings)
        except nats.errors.TimeoutError:
            if attempt == attempts - 1:
                raise
            # sleep-ok: backoff before re-reading while the cluster re-elects its stream leaders
            await asyncio.sleep(1.0)
    raise AssertionError("unreachable")


async def _read_all_events(settings: Settings) -> list[AuditEvent]:
    async with Connection(settings, name="chaos-audit") as conn:
        stream = conn.ns.audit_stream
        info = await conn.js.stream_info(stream)
        out: list[AuditEvent] = []
        if info.state.messages == 0:
            return out
        sub = await conn.js.subscribe(conn.ns.audit_wildcard, ordered_consumer=True, stream=stream)
        try:
            while len(out) < info.state.messages:
                msg = await sub.next_msg(timeout=10)
                out.append(decode(AuditEvent, msg.data))
        finally:
            await sub.unsubscribe()
        return out


def count(events: list[AuditEvent], etype: EventType, **match: Any) -> Counter[tuple[str | None, str | None]]:
    """How many events of ``etype`` per (agent_uri, instance), filtered on equal fields."""
    return Counter(
        (e.agent_uri, e.instance)
        for e in events
        if e.type is etype and all(getattr(e, k) == v for k, v in match.items())
    )


async def stored_checkpoint(settings: Settings, uri: str, instance: str) -> Checkpoint | None:
    async with Connection(settings, name="chaos-checkpoints") as conn:
        ns: Namespace = conn.ns
        kv = await conn.js.key_value(ns.checkpoints_bucket)
        try:
            entry = await kv.get(ns.instance_key(parse_agent_uri(uri), instance))
        except Exception:
            return None
        return decode(Checkpoint, entry.value) if entry.value else None

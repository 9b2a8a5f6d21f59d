"""Helpers for operator and CLI tests: real SDK agents in-process, statuses as the controller writes them."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from agent_sdk import AgentKilled, AsyncAgent
from mesh.codec import encode
from mesh.connection import Connection
from mesh.kvscan import put_key
from mesh.models import InstanceStatus, Status
from mesh.settings import Settings
from mesh.target import parse_agent_uri

MESH = str(Path(sys.executable).parent / "mesh")
URI = "agent://acme/prod/mailer"


async def register(
    conn: Connection,
    uri: str,
    instance: str,
    status: Status = Status.ACTIVE,
    *,
    age: float = 0.0,
    metadata: dict[str, Any] | None = None,
) -> None:
    """Write an instance's status as the controller would (a 'ghost' when no agent runs it)."""
    seen = datetime.now(UTC) - timedelta(seconds=age)
    record = InstanceStatus(
        agent_uri=uri,
        instance=instance,
        status=status,
        first_seen=seen,
        last_seen=seen,
        last_change=seen,
        metadata=metadata or {},
    )
    key = conn.ns.instance_key(parse_agent_uri(uri), instance)
    await put_key(conn, conn.ns.instances_bucket, key, encode(record))


class Worker:
    """A real AsyncAgent (on_kill="pause") that counts work units and checkpoints after each."""

    def __init__(self, settings: Settings, uri: str, instance: str) -> None:
        self.agent = AsyncAgent(
            uri,
            instance=instance,
            settings=settings,
            on_kill="pause",
            hard_kill=False,
            heartbeat_interval=0.5,
        )
        self.done = 0
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> Worker:
        await self.agent.start()
        self.task = asyncio.create_task(self._loop())
        return self

    async def _loop(self) -> None:
        with contextlib.suppress(AgentKilled, asyncio.CancelledError):
            while True:
                await self.agent.heartbeat(metadata={"done": self.done})
                self.done += 1
                await self.agent.checkpoint({"done": self.done})
                await self.agent.sleep(0.02)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(BaseException):
                await self.task
        with contextlib.suppress(Exception):
            await self.agent.stop()


async def wait_until(predicate: Any, timeout: float = 20.0, every: float = 0.05) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(every)

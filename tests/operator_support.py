"""Helpers for operator and CLI tests: real SDK agents in-process, listed by a real controller."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from agent_sdk import AgentKilled, AsyncAgent
from mesh.protocol.codec import encode
from mesh.protocol.models import InstanceStatus, Status
from mesh.protocol.target import parse_agent_uri
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection
from mesh.transport.kvscan import put_key
from tests.waiting import HANG, await_until

MESH = str(Path(sys.executable).parent / "mesh")
URI = "agent://acme/prod/mailer"


async def listed_by_a_controller(
    settings: Settings,
    conn: Connection,
    instances: list[tuple[str, str]],
    *,
    ghosts: Sequence[tuple[str, str]] = (),
) -> None:
    """Run a real controller until it lists every instance (and ghost) as active, then stop it.

    The statuses are the controller's own writes; the tests that follow run with the controller
    down, as the README says a kill works. A ghost heartbeats only until it is listed: an
    instance the controller knows of that will never acknowledge.
    """
    from tests.integration.controller_helpers import Pacer, fast_options, running_controller

    pacers = [Pacer(conn.nc, conn.ns, uri, name, every=0.1).start() for uri, name in ghosts]
    wanted = {(uri, name) for uri, name in [*instances, *ghosts]}
    try:
        async with running_controller(settings, fast_options(lost_after=600.0)) as ctl:
            from mesh.client.operator import AsyncMesh

            async with AsyncMesh(settings) as op:

                async def all_listed() -> bool:
                    rows = await op.list_instances()
                    return wanted <= {(r.agent_uri, r.instance) for r in rows if r.status is Status.ACTIVE}

                await wait_until(all_listed, what=f"the controller to list {sorted(wanted)}")
            assert ctl.ingesting
    finally:
        for pacer in pacers:
            await pacer.stop()


async def register(
    conn: Connection,
    uri: str,
    instance: str,
    status: Status = Status.ACTIVE,
    *,
    age: float = 0.0,
    metadata: dict[str, Any] | None = None,
) -> None:
    """Store a status record directly, for the read-only tests of ``list``/``get`` that need states
    (lost, stale, old) a real controller would take minutes to reach. Tests of kills and acks use
    ``listed_by_a_controller`` instead; the controller's own writes are tested in
    tests/integration/test_controller_*.py."""
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


async def wait_until(predicate: Any, timeout: float = HANG, what: str = "condition") -> Any:
    return await await_until(predicate, timeout, what)

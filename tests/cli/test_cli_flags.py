"""The CLI flags the README shows and no other test drives: --instance, --grace, --watch, --follow."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator

import pytest

from mesh.client.operator import AsyncMesh
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection
from tests.cli.test_cli_commands import env_for, mesh_cli
from tests.integration.controller_helpers import Pacer, fast_options, running_controller
from tests.operator_support import MESH, URI
from tests.waiting import HANG, await_until

pytestmark = pytest.mark.timeout(120)


class Streaming:
    """A ``mesh`` command that runs until interrupted; its output, collected as it comes."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.out = ""
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while chunk := await self.proc.stdout.read(4096):
            self.out += chunk.decode()

    async def shows(self, text: str) -> None:
        await await_until(lambda: text in self.out or self.proc.returncode is not None, what=repr(text))
        assert text in self.out, self.out[-2000:]

    async def interrupt(self) -> int:
        self.proc.send_signal(signal.SIGINT)  # what Ctrl+C sends
        code = await asyncio.wait_for(self.proc.wait(), HANG)
        await asyncio.wait_for(self._reader, HANG)
        return code


@contextlib.asynccontextmanager
async def streaming(settings: Settings, *args: str) -> AsyncIterator[Streaming]:
    proc = await asyncio.create_subprocess_exec(
        MESH, *args, env=env_for(settings), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    run = Streaming(proc)
    try:
        yield run
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_kill_with_instance_and_grace_writes_exactly_that_record(
    conn: Connection, settings: Settings
) -> None:
    code, _, err = await mesh_cli(
        settings, "kill", URI, "--instance", "us-east1-b", "--grace", "3", "--reason", "loops", "--wait", "0"
    )
    assert code == 0, err
    async with AsyncMesh(settings) as op:
        (held,) = await op.records()
        assert held.record.target == URI and held.record.instance == "us-east1-b"
        assert held.record.grace == 3.0 and held.record.reason == "loops" and held.record.actor == "alice"
        code, _, err = await mesh_cli(settings, "resume", URI, "--instance", "us-east1-b", "--wait", "0")
        assert code == 0, err
        assert await op.records() == []


async def test_list_watch_redraws_as_the_fleet_changes(conn: Connection, settings: Settings) -> None:
    pacers = [Pacer(conn.nc, conn.ns, URI, "w1", every=0.1).start()]
    try:
        async with running_controller(settings, fast_options(lost_after=600.0)):
            async with streaming(settings, "list", "--watch") as watch:
                await watch.shows("w1")
                await watch.shows("1 instance: 1 active")
                # an instance that appears later shows up in a later frame, without a restart
                pacers.append(Pacer(conn.nc, conn.ns, URI, "w2", every=0.1).start())
                await watch.shows("2 instances: 2 active")
                assert await watch.interrupt() == 0
    finally:
        for pacer in pacers:
            await pacer.stop()


async def test_events_follow_prints_events_as_they_happen(conn: Connection, settings: Settings) -> None:
    async with streaming(settings, "events", "--follow") as follow, AsyncMesh(settings) as op:
        # Caught up on a sentinel first: what comes after it can only arrive as a new event.
        await op.kill("agent://acme/prod/sentinel", reason="sentinel", wait=0)
        await follow.shows("agent://acme/prod/sentinel")
        assert URI not in follow.out
        await op.kill(URI, reason="while following", wait=0)
        await follow.shows("while following")
        await op.resume(URI, wait=0)
        await await_until(lambda: follow.out.count(URI) >= 2, what="the resume line")
        assert await follow.interrupt() == 0
    lines = [line for line in follow.out.splitlines() if URI in line]
    assert [line.split()[2] for line in lines] == ["kill", "resume"]

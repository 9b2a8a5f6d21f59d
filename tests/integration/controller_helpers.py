"""Helpers for the controller's integration tests: run it, feed it heartbeats, read what it wrote."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import nats.js.errors
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from controller import ControllerOptions
from controller.runner import Controller
from mesh.protocol.codec import encode
from mesh.protocol.models import AuditEvent, Heartbeat, InstanceStatus, Status
from mesh.protocol.subjects import Namespace
from mesh.protocol.target import parse_agent_uri
from mesh.runtime.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")

#: Fast settings for tests: instances heartbeat every 0.2 s and declare a 0.5 s interval.
FAST = {
    "lost_after": 4.0,
    "refresh_every": 0.5,
    "sweep_every": 0.1,
    "flush_every": 0.05,
    "lease_ttl": 1.5,
}


def fast_options(**kw: Any) -> ControllerOptions:
    return ControllerOptions(**{**FAST, **kw})


async def eventually(check: Callable[[], Awaitable[T | None]], timeout: float = 30.0, what: str = "") -> T:
    """Poll ``check`` until it returns something truthy (no timing assertion: a generous deadline)."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what or check}: last {last!r}")


@contextlib.asynccontextmanager
async def running_controller(
    settings: Settings, options: ControllerOptions, *, wait_active: bool = True
) -> AsyncIterator[Controller]:
    """An in-process controller; by default, entered once it is active and subscribed."""
    stop = asyncio.Event()
    ctl = Controller(settings, options)
    task = asyncio.create_task(ctl.run(stop))
    try:
        if wait_active:

            async def ready() -> bool:
                if task.done():
                    task.result()
                return ctl.ingesting

            await eventually(ready, what="the controller to be active")
        yield ctl
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


def heartbeat(uri: str, instance: str, **kw: Any) -> Heartbeat:
    kw.setdefault("interval", 0.5)
    kw.setdefault("pid", 4242)
    return Heartbeat(agent_uri=uri, instance=instance, **kw)


async def send(nc: NATS, ns: Namespace, hb: Heartbeat) -> None:
    await nc.publish(ns.heartbeat_subject(parse_agent_uri(hb.agent_uri), hb.instance), encode(hb))


class Pacer:
    """Publishes heartbeats for one instance every ``every`` seconds until stopped."""

    def __init__(
        self, nc: NATS, ns: Namespace, uri: str, instance: str, every: float = 0.15, **kw: Any
    ) -> None:
        self.nc, self.ns, self.uri, self.instance, self.every, self.kw = nc, ns, uri, instance, every, kw
        self.task: asyncio.Task[None] | None = None
        self.status = Status.ACTIVE

    async def _run(self) -> None:
        seq = 0
        while True:
            seq += 1
            await send(
                self.nc, self.ns, heartbeat(self.uri, self.instance, seq=seq, status=self.status, **self.kw)
            )
            await asyncio.sleep(self.every)  # sleep-ok: the heartbeat interval this fake instance keeps

    def start(self) -> Pacer:
        self.task = asyncio.create_task(self._run())
        return self

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None


async def status_of(js: JetStreamContext, ns: Namespace, key: str) -> InstanceStatus | None:
    kv = await js.key_value(ns.instances_bucket)
    try:
        entry = await kv.get(key)
    except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
        return None
    return InstanceStatus.model_validate_json(entry.value or b"")


async def written_after(js: JetStreamContext, ns: Namespace, key: str, mark: datetime) -> InstanceStatus:
    """Wait for the controller to write ``key``'s status with a ``last_seen`` later than ``mark``:
    evidence that it processed a heartbeat sent after that moment (and swept in between)."""

    async def later() -> InstanceStatus | None:
        rec = await status_of(js, ns, key)
        return rec if rec is not None and rec.last_seen > mark else None

    return await eventually(later, what=f"a status write of {key} after {mark.isoformat()}")


async def wait_status(
    js: JetStreamContext, ns: Namespace, key: str, status: Status, timeout: float = 30
) -> None:
    async def check() -> bool:
        rec = await status_of(js, ns, key)
        return rec is not None and rec.status is status

    await eventually(check, timeout, f"{key} to be {status.value}")


async def audit_events(js: JetStreamContext, ns: Namespace, *types: str) -> list[AuditEvent]:
    info = await js.stream_info(ns.audit_stream)
    out: list[AuditEvent] = []
    if not info.state.messages:
        return out
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await js.get_msg(ns.audit_stream, seq)
        event = AuditEvent.model_validate_json(msg.data or b"")
        if not types or event.type.value in types:
            out.append(event)
    return out


async def srv_request(nc: NATS, subject: str, prefix: str, wait: float = 1.0) -> list[dict[str, Any]]:
    """Send a service API request and collect every answer from controllers of ``prefix``."""
    inbox = nc.new_inbox()
    answers: list[dict[str, Any]] = []
    sub = await nc.subscribe(inbox)
    await nc.publish(subject, b"", reply=inbox)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            msg = await sub.next_msg(timeout=max(0.01, deadline - time.monotonic()))
        except nats.errors.TimeoutError:
            break
        body = json.loads(msg.data)
        if body.get("metadata", {}).get("prefix") == prefix:
            answers.append(body)
    await sub.unsubscribe()
    return answers


class ControllerProcess:
    """``python -m cli.controller_cmd`` as a real process, so that a test can SIGKILL it."""

    def __init__(self, settings: Settings, log_path: Path, *args: str) -> None:
        env = {
            **os.environ,
            "NATS_URL": settings.nats_url,
            "MESH_PREFIX": settings.prefix,
            "MESH_LOG_FORMAT": "json",
        }
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli.controller_cmd", *args],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._log.close()

    def terminate(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(15)
        finally:
            self._log.close()

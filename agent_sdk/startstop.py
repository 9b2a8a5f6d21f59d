"""Starting and stopping one instance: connect, subscribe, first read, ``started``; flush, report, drain."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

from agent_sdk import events
from agent_sdk.liveness import for_loop
from mesh.errors import ConfigError, MeshError, MeshTimeout, NotProvisioned, PermissionDenied
from mesh.protocol.models import EventType, Status
from mesh.runtime.aio import wait_for
from mesh.transport import kvops
from mesh.transport.ackpipe import pipelined_js
from mesh.transport.connection import Connection
from mesh.transport.provision import provision

if TYPE_CHECKING:
    from agent_sdk.core import AgentCore

__all__ = ["CLOSE_TIMEOUT", "start", "stop"]

#: The longest any one step of closing an agent may take when the server stalls.
CLOSE_TIMEOUT = 5.0


async def start(core: AgentCore, *, own_loop: bool) -> Any:
    """Connect, subscribe, read kill records and checkpoint, then report ``started``; the restored state.

    ``own_loop=False`` (AsyncAgent): the loop is the user's and may be blocked by their code, so
    a watchdog thread also checks for kills out of band when the loop stalls.
    """
    core.loop = asyncio.get_running_loop()
    gate = core.gate
    if core.shared is not None:
        conn = core.shared
        if not conn.is_connected:
            raise ConfigError("the shared connection is not connected: open it before starting agents")
        core.listener = conn.add_listener(gate.on_disconnect, gate.on_reconnect)
    else:
        conn = Connection(
            core.cfg.settings,
            name=f"agent-sdk {core.cfg.uri} {core.cfg.instance}",
            on_disconnect=gate.on_disconnect,
            on_reconnect=gate.on_reconnect,
        )
        await conn.connect()
    core.conn = conn
    core.js = pipelined_js(conn) if core.shared is not None else conn.js
    core.link_token = conn.on_link_up(gate.gate_now)
    try:
        await _buckets(core, conn)
        ckpt_kv = core.ckpt.kv
        assert ckpt_kv is not None
        # Subscribe first, then read: a kill written in between arrives by one path or both.
        await core.feed.subscribe()
        await core.feed.read_records()
        restored = await core.ckpt.load(ckpt_kv, conn.js, core.ns.checkpoints_bucket, scoped=conn.scoped)
        core.last_contact = time.monotonic()
        await core.emit(
            events.lifecycle_event(
                core.cfg,
                EventType.STARTED,
                data={
                    "kill_keys": [r.key for r in core.in_force()],
                    "checkpoint_seq": core.ckpt.written_seq or None,
                    "hard_kill": core.cfg.hard_kill,
                    "on_kill": core.cfg.on_kill,
                },
            )
        )
    except BaseException:
        await _release(core, conn)
        raise
    core.liveness = for_loop(asyncio.get_running_loop())
    core.liveness.add(core)
    await core.timers.send_heartbeat()
    core.timers.start()
    if core.cfg.hard_kill and not own_loop:
        core.escalation.watch()
    core.log.debug("agent started", killed=core.killed, restored=restored is not None)
    return restored


async def _buckets(core: AgentCore, conn: Connection) -> None:
    try:
        return await _open_buckets(core, conn)
    except NotProvisioned:
        pass
    try:
        await provision(conn.js, core.ns)
    except PermissionDenied:
        core.log.info("may not provision; expecting an operator to have done it")
    return await _open_buckets(core, conn)


async def _open_buckets(core: AgentCore, conn: Connection) -> None:
    assert core.js is not None
    core.control_kv = await kvops.open_bucket(conn.js, core.ns.control_bucket)
    # The checkpoint bucket through core.js: on a shared connection its puts join the pipeline.
    core.ckpt.kv = await kvops.open_bucket(core.js, core.ns.checkpoints_bucket)


async def stop(core: AgentCore, outcome: Status, exc: BaseException | None = None) -> None:
    """Flush, report ``stopped``/``crashed`` (killed: ``stopped`` with that status), drain."""
    if core.closed:
        return
    core.closed = True
    core.liveness.discard(core)
    core.wake_all(for_good=True)  # paused safe points can leave
    await core.timers.stop(CLOSE_TIMEOUT)
    conn = core.conn
    if conn is None:
        return
    try:
        try:
            await wait_for(core.ckpt.flush(), CLOSE_TIMEOUT)
        except TimeoutError as err:
            raise MeshTimeout("flush the last checkpoint", CLOSE_TIMEOUT) from err
        data: dict[str, Any] = {"status": outcome.value, "checkpoint_seq": core.ckpt.written_seq or None}
        etype = EventType.STOPPED
        if outcome is Status.CRASHED and exc is not None:
            etype = EventType.CRASHED
            data["exception"] = type(exc).__name__
            data["message"] = str(exc)[:1000]
        core.status = outcome
        if conn.is_connected:
            await core.quota.close()  # unspent leases go back to their budgets
            await core.timers.send_heartbeat()
            await core.emit(events.lifecycle_event(core.cfg, etype, data=data), timeout=2.0)
    except MeshError as err:
        core.log.warning("could not report stop", error=str(err))
    finally:
        core.cancel_background()
        await _release(core, conn)
    core.log.debug("agent closed", status=outcome.value)


async def _release(core: AgentCore, conn: Connection) -> None:
    """Drain our own connection; on a shared one, only drop our subscriptions and flush."""
    if core.shared is None:
        await conn.close(timeout=CLOSE_TIMEOUT)
        return
    conn.remove_listener(core.link_token)
    if core.listener is not None:
        conn.remove_listener(core.listener)
        core.listener = None
    await core.feed.unsubscribe()
    if conn.is_connected:
        with contextlib.suppress(Exception):
            await conn.nc.flush(timeout=int(CLOSE_TIMEOUT))

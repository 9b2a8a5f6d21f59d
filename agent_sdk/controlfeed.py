"""The control feed of one instance: kill records pushed to it, and the reads that check them."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

from mesh.errors import MalformedMessage, MeshError
from mesh.protocol.controlupdate import ControlUpdate
from mesh.transport.connection import Connection
from mesh.transport.control import (
    parse_control_message,
    read_records,
    read_records_batched,
    read_records_from_leader,
)
from mesh.transport.natstypes import Msg, Subscription

if TYPE_CHECKING:
    from agent_sdk.core import AgentCore

__all__ = ["ControlFeed"]

MALFORMED_LOG_EVERY = 10.0


class ControlFeed:
    """Subscribes to an instance's control subjects (or joins its connection's router), feeds
    what arrives and what is read to the kill machine, and re-reads the KV, the truth."""

    def __init__(self, core: AgentCore) -> None:
        self.core = core
        #: Our own subscriptions (none on a shared connection: its router holds them).
        self.subs: list[Subscription] = []
        self.malformed = 0
        self._malformed_logged = 0.0
        self._malformed_resync = 0.0
        self._resync_lock = asyncio.Lock()

    async def subscribe(self) -> None:
        core = self.core
        assert core.conn is not None and core.control_kv is not None
        subjects = core.ns.instance_control_subjects(core.cfg.uri, core.cfg.instance)
        if core.router is not None:
            await core.router.attach(core, subjects, core.control_kv)
            return
        self.subs = await core.conn.subscribe_all(subjects, self._on_message)
        await core.conn.nc.flush()

    async def unsubscribe(self) -> None:
        if self.core.router is not None:
            await self.core.router.detach(self.core)
        subs, self.subs = self.subs, []
        await Connection.unsubscribe_all(subs)

    # -- pushed records ---------------------------------------------------------------------------
    async def _on_message(self, msg: Msg) -> None:
        try:
            update = parse_control_message(self.core.ns, msg)
        except MalformedMessage as exc:
            self.note_malformed(msg.subject, str(exc))
            return
        except Exception as exc:  # a callback that raises would be logged by nats-py and forgotten
            self.note_malformed(msg.subject, f"{type(exc).__name__}: {exc}")
            return
        self.on_update(update)

    def on_update(self, update: ControlUpdate) -> None:
        """A pushed control update for one of our keys (decoded once, by us or the router)."""
        core = self.core
        if core.closed:
            return
        if update.record is None:
            # A resume lifts a kill, so it is confirmed against the KV before it counts: a forged
            # or replayed "cleared" push must never let an instance act.
            if update.key in core.machine.keys:
                core.spawn(self._confirm_clear(update.key))
            return
        self.apply([update])

    async def _confirm_clear(self, key: str) -> None:
        core = self.core
        assert core.control_kv is not None
        try:
            if core.router is not None:
                updates = await core.router.read(core.control_kv, [key])
            else:
                updates = await read_records(core.control_kv, [key])
        except MeshError as exc:
            core.log.warning(
                "confirming a resume failed; staying halted until the next re-read", error=str(exc)
            )
            return
        self.apply(updates, from_kv=True)
        with contextlib.suppress(MeshError):  # the periodic re-read asks again
            await self.ask_the_leader()

    def note_malformed(self, subject: str, error: str) -> None:
        self.malformed += 1
        now = time.monotonic()
        if now - self._malformed_logged >= MALFORMED_LOG_EVERY:
            self._malformed_logged = now
            self.core.log.warning(
                "ignored malformed control message", subject=subject, error=error, count=self.malformed
            )
        # The KV is the truth: a corrupt push may hide a real kill, so read the records again
        # (at most once a second, so a flood of garbage cannot turn into a flood of reads).
        if now - self._malformed_resync >= 1.0:
            self._malformed_resync = now
            self.core.spawn(self.resync())

    # -- reads --------------------------------------------------------------------------------------
    async def read_records(self) -> None:
        core = self.core
        kv = core.control_kv
        assert kv is not None and core.conn is not None
        # One direct multi-get for every matching key: one round trip, not one per key; on a
        # shared connection, one for every agent of the connection reading in this loop turn.
        if core.router is not None:
            updates = await core.router.read(kv, core.machine.keys)
        else:
            updates = await read_records_batched(core.conn, kv, sorted(core.machine.keys))
        self.apply(updates, from_kv=True)
        await self.ask_the_leader()

    async def ask_the_leader(self, disputed: list[str] | None = None) -> None:
        """A read contradicted a pushed kill with a clear: only the stream's leader may confirm it."""
        core = self.core
        if disputed is None:
            disputed = core.machine.take_disputed()
        if disputed:
            assert core.conn is not None
            self.apply(await read_records_from_leader(core.conn, disputed), from_kv=True, leader=True)

    async def resync(self) -> bool:
        """Re-read every matching key; True if the read succeeded (the watch-health check)."""
        core = self.core
        if core.conn is None or not core.conn.is_connected or core.closed:
            return False
        async with self._resync_lock:
            try:
                await self.read_records()
            except MeshError as exc:
                core.log.warning("re-reading kill records failed", error=str(exc))
                return False
        core.last_contact = time.monotonic()
        return True

    def periodic_read(self, updates: dict[str, ControlUpdate]) -> None:
        """The router's periodic re-read, our share of it (what :meth:`resync` would have read)."""
        core = self.core
        if core.closed or self._resync_lock.locked():
            return  # a re-read of our own is under way and will apply its own result
        self.apply([updates[k] for k in sorted(updates)], from_kv=True)
        disputed = core.machine.take_disputed()
        if disputed:
            core.spawn(self.ask_the_leader(disputed))
        core.last_contact = time.monotonic()

    def apply(self, updates: list[ControlUpdate], *, from_kv: bool = False, leader: bool = False) -> None:
        core = self.core
        new = core.machine.apply(updates, from_kv=from_kv, leader=leader)
        if new is None:
            return
        for held in new:
            core.log.info(
                "kill observed", key=held.key, revision=held.revision, command_id=held.record.command_id
            )
        core.refresh()

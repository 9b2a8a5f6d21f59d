"""Checkpoints (and usage totals): validated at the call, written in the background, flushed on demand."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import structlog

from agent_sdk.usage import UsageCounters
from mesh.errors import MalformedMessage
from mesh.protocol.codec import decode, encode, encode_state
from mesh.protocol.kvwire import is_delete
from mesh.protocol.models import Checkpoint
from mesh.runtime.aio import raise_if_cancelling
from mesh.transport.connection import translate_error
from mesh.transport.kvops import last_message
from mesh.transport.natstypes import JetStreamContext, KeyValue

__all__ = ["CheckpointStore"]

log = structlog.get_logger("agent_sdk.checkpoints")


class CheckpointStore:
    """The latest checkpoint of one instance and its durable copy in the checkpoints bucket.

    ``stage`` runs on the caller's thread and never touches the network; the writer task on the
    event loop takes whatever is latest when it wakes, so a fast loop costs one write per
    round trip rather than one per call. The instance's usage totals travel in the same value,
    so that they survive a restart with the same instance id.
    """

    def __init__(self, agent_uri: str, instance: str, key: str, usage: UsageCounters | None = None) -> None:
        self.agent_uri = agent_uri
        self.instance = instance
        self.key = key
        self.kv: KeyValue | None = None
        self.restored: Any = None
        #: (seq, JSON bytes) of the newest checkpoint, replaced atomically by the caller thread.
        self.latest: tuple[int, bytes] | None = None
        #: (seq, JSON bytes) of the newest checkpoint known to be stored: what an ack may carry.
        self.durable: tuple[int, bytes] | None = None
        self.written_seq = 0
        self.seq = 0
        self.usage = usage or UsageCounters()
        #: ``usage.version`` of the totals stored last.
        self.usage_written = 0
        self.scheduled = False
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()

    async def load(self, kv: KeyValue, js: JetStreamContext, bucket: str, *, scoped: bool = False) -> Any:
        """Read this instance id's last checkpoint (None if there is none).

        From the stream's leader, not with a direct get: on a replicated bucket any replica
        answers a direct get, and a follower that lags would hand a restarted instance an older
        checkpoint than the one it wrote last, so that it redid work it had already done.
        """
        self.kv = kv
        # A scoped identity may read its own key only by a direct get (the leader's API names the
        # key in the request body): on a replicated bucket its restore may then be one write late.
        stream, subject = f"KV_{bucket}", f"$KV.{bucket}.{self.key}"
        msg = await last_message(
            js, stream, subject, direct=scoped, operation="read checkpoint", about=self.key
        )
        if msg is None or is_delete(msg.headers) or not msg.data:
            return None
        try:
            saved = decode(Checkpoint, msg.data)
        except MalformedMessage as exc:
            log.warning("ignoring unreadable checkpoint", key=self.key, error=str(exc))
            return None
        self.usage.restore(saved.usage)
        if saved.seq == 0 and saved.state is None:
            return None  # only usage was ever saved under this id: there is no checkpoint
        self.seq = self.written_seq = saved.seq
        self.restored = saved.state
        self.latest = self.durable = (saved.seq, encode_state(saved.state))
        return saved.state

    def stage(self, state: Any) -> bool:
        """Validate and keep ``state`` as the latest; True if the writer needs waking."""
        raw = encode_state(state)  # raises InvalidCheckpoint at the call, not later
        self.seq += 1
        self.latest = (self.seq, raw)
        if self.scheduled:
            return False
        self.scheduled = True
        return True

    def wake(self) -> None:
        self._wake.set()

    @property
    def state(self) -> Any:
        latest = self.latest
        return None if latest is None else json.loads(latest[1])

    def stored(self) -> tuple[int | None, Any]:
        """(seq, state) of the newest checkpoint known to be stored; (None, None) if there is none.

        A ``halted`` acknowledgement carries this, never a checkpoint still in flight: the
        cluster campaign saw a put fail during an election while the ack was stored, and the
        restarted instance restored less than its acknowledgement said it had saved.
        """
        durable = self.durable
        return (None, None) if durable is None else (durable[0], json.loads(durable[1]))

    @property
    def usage_dirty(self) -> bool:
        return self.usage.version != self.usage_written

    @property
    def dirty(self) -> bool:
        latest = self.latest
        return (latest is not None and latest[0] > self.written_seq) or self.usage_dirty

    async def flush(self) -> bool:
        """Write the latest checkpoint if it is not stored yet; False (logged) if that failed."""
        async with self._lock:
            self.scheduled = False  # cleared before reading latest: a later stage() wakes us again
            latest = self.latest
            usage_version, usage = self.usage.snapshot()
            due = (latest is not None and latest[0] > self.written_seq) or usage_version != self.usage_written
            if not due or self.kv is None:
                return True
            seq, state = (latest[0], json.loads(latest[1])) if latest is not None else (0, None)
            value = encode(
                Checkpoint(
                    agent_uri=self.agent_uri, instance=self.instance, seq=seq, state=state, usage=usage
                )
            )
            try:
                await self.kv.put(self.key, value)
            except Exception as exc:
                raise_if_cancelling()
                err = translate_error(exc, "write checkpoint", subject=self.key)
                log.warning("checkpoint write failed; will retry", seq=seq, error=str(err))
                self.wake()  # the writer task retries in the background
                return False
            if latest is not None and seq > self.written_seq:
                self.durable = latest
            self.written_seq = max(self.written_seq, seq)
            self.usage_written = max(self.usage_written, usage_version)
            return True

    async def run_writer(self) -> None:
        """Background task: write whenever woken, retrying after failures."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not await self.flush():
                await asyncio.sleep(0.5)
                if self.dirty:
                    self._wake.set()

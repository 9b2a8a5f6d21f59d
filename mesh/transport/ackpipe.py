"""JetStream publishes of many agents on one shared connection, their acks gathered, not awaited one by one.

When a kill reaches the agents of a shared connection, each publishes its ``halted`` event (and
its checkpoint, just before it) at once. Through nats-py's ``request`` every publish pays for its
own reply future and its own timeout timer; here the publishes of the connection go out back to
back with a reply subject under one wildcard inbox subscription, the acks are matched to their
publishes as they come back, and the publishes of one turn of the loop share one timeout timer.
Each caller still gets its own ack (or its own error) before it goes on: an instance is never
reported acknowledged before its checkpoint and its event are stored (docs/kill-contract.md).
"""

from __future__ import annotations

import asyncio
import json
import weakref
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext, api
from nats.nuid import NUID

from mesh.transport.connection import Connection

__all__ = ["AckPipe", "PipelinedJetStream", "pipelined_js"]

_STATUS = api.Header.STATUS
_NO_RESPONDERS = "503"


class AckPipe:
    """One connection's in-flight JetStream publishes, keyed by reply token."""

    def __init__(self, nc: NATS) -> None:
        self.nc = nc
        self._pending: dict[str, asyncio.Future[Msg]] = {}
        self._nuid = NUID()
        self._prefix = ""
        self._sub: Subscription | None = None
        self._sub_lock = asyncio.Lock()
        #: The timeout batch of this turn of the loop: (timeout, futures), reset by call_soon.
        self._batch: tuple[float, list[asyncio.Future[Msg]]] | None = None

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    async def _ensure(self) -> None:
        if self._sub is not None:
            return
        async with self._sub_lock:
            if self._sub is None:
                # Under the connection's inbox prefix: a scoped identity may receive replies only there.
                self._prefix = self.nc.new_inbox()
                self._sub = await self.nc.subscribe(self._prefix + ".*", cb=self._on_reply)

    async def _on_reply(self, msg: Msg) -> None:
        fut = self._pending.pop(msg.subject[len(self._prefix) + 1 :], None)
        if fut is not None and not fut.done():
            fut.set_result(msg)

    def _arm(self, fut: asyncio.Future[Msg], timeout: float) -> None:
        batch = self._batch
        if batch is None or batch[0] != timeout:
            loop = asyncio.get_running_loop()
            batch = self._batch = (timeout, [])
            loop.call_later(timeout, self._expire, batch[1])
            loop.call_soon(self._close_batch, batch)
        batch[1].append(fut)

    def _close_batch(self, batch: tuple[float, list[asyncio.Future[Msg]]]) -> None:
        if self._batch is batch:
            self._batch = None

    @staticmethod
    def _expire(futures: list[asyncio.Future[Msg]]) -> None:
        for fut in futures:
            if not fut.done():
                fut.set_exception(nats.errors.TimeoutError())

    async def request(
        self, subject: str, payload: bytes, timeout: float, headers: dict[str, str] | None
    ) -> Msg:
        """Publish with a reply subject of ours and wait for that reply (or ``timeout``)."""
        await self._ensure()
        token = self._nuid.next().decode()
        fut: asyncio.Future[Msg] = asyncio.get_running_loop().create_future()
        self._pending[token] = fut
        self._arm(fut, timeout)
        try:
            await self.nc.publish(subject, payload, reply=f"{self._prefix}.{token}", headers=headers)
            msg = await fut
        finally:
            self._pending.pop(token, None)
        if msg.headers and msg.headers.get(_STATUS) == _NO_RESPONDERS:
            raise nats.errors.NoRespondersError
        return msg


class PipelinedJetStream(JetStreamContext):
    """A JetStream context whose ``publish`` (and so its KV puts) goes through an :class:`AckPipe`."""

    def __init__(self, nc: NATS, pipe: AckPipe) -> None:
        super().__init__(nc)
        self.pipe = pipe

    async def publish(
        self,
        subject: str,
        payload: bytes = b"",
        timeout: float | None = None,
        stream: str | None = None,
        headers: dict[str, Any] | None = None,
        msg_ttl: float | None = None,
    ) -> api.PubAck:
        # The same checks and results as nats-py's JetStreamContext.publish.
        hdr = headers
        if stream is not None:
            hdr = dict(hdr or {})
            hdr[api.Header.EXPECTED_STREAM] = stream
        if msg_ttl is not None:
            hdr = dict(hdr or {})
            hdr[api.Header.MSG_TTL] = str(int(msg_ttl))
        wait = self._timeout if timeout is None else timeout
        try:
            msg = await self.pipe.request(subject, payload, wait, hdr)
        except nats.errors.NoRespondersError as exc:
            raise nats.js.errors.NoStreamResponseError from exc
        resp = json.loads(msg.data)
        if "error" in resp:
            raise nats.js.errors.APIError.from_error(resp["error"])
        return api.PubAck.from_response(resp)


_contexts: weakref.WeakKeyDictionary[Connection, PipelinedJetStream] = weakref.WeakKeyDictionary()


def pipelined_js(conn: Connection) -> PipelinedJetStream:
    """The pipelined JetStream context of a shared connection (one per connection and client)."""
    js = _contexts.get(conn)
    if js is None or js._nc is not conn.nc:
        js = _contexts[conn] = PipelinedJetStream(conn.nc, AckPipe(conn.nc))
    return js

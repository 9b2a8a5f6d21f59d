"""Fast KV access without bucket lookups: batched last-value reads, puts and deletes with revisions."""

from __future__ import annotations

import asyncio
import contextlib
import json

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, PubAck

from mesh.errors import NotProvisioned
from mesh.protocol.kvwire import KVEntry, KVLatest, Reply, is_delete, parse_direct_reply
from mesh.runtime.aio import wait_for
from mesh.transport.connection import Connection, translate_error

__all__ = ["KVEntry", "KVLatest", "delete_key", "put_key", "read_latest", "scan_latest"]

#: Largest batch asked of one direct multi-get; bigger buckets fall back to a consumer scan.
DIRECT_BATCH = 1024
#: How long a write waits out a stream with no leader (503): a cluster's election takes 4-9 s.
ELECTION = 10.0


def _stream(bucket: str) -> str:
    return f"KV_{bucket}"


async def _missing_bucket(conn: Connection, bucket: str) -> bool:
    """Whether the bucket is known to be absent: only "stream not found" says so. A timeout or a
    503 (a cluster electing the stream's leader) says nothing, and must not read "run mesh init"."""
    try:
        await conn.js.stream_info(_stream(bucket))
    except nats.js.errors.NotFoundError:
        return True
    except Exception:
        return False
    return False


async def _publish(
    conn: Connection,
    bucket: str,
    key: str,
    value: bytes,
    timeout: float,
    headers: dict[str, str] | None = None,
) -> PubAck:
    """``js.publish``, retried on a 503 for ``max(timeout, ELECTION)`` unless the bucket is absent:
    the stream has no leader for a few seconds after a cluster node dies, and a 503 stored nothing."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(timeout, ELECTION)
    pause = 0.05
    while True:
        try:
            return await conn.js.publish(f"$KV.{bucket}.{key}", value, timeout=timeout, headers=headers)
        except (nats.js.errors.NoStreamResponseError, nats.errors.NoRespondersError):
            if loop.time() + pause > deadline or await _missing_bucket(conn, bucket):
                raise
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.5)


async def put_key(conn: Connection, bucket: str, key: str, value: bytes, *, timeout: float = 5.0) -> int:
    """``kv.put`` with no bucket lookup first; returns the new revision."""
    try:
        ack = await _publish(conn, bucket, key, value, timeout)
    except Exception as exc:
        if await _missing_bucket(conn, bucket):
            raise NotProvisioned(f"bucket {bucket}") from exc
        raise translate_error(exc, f"write to {bucket}", subject=key, timeout=timeout) from exc
    return int(ack.seq)


async def delete_key(conn: Connection, bucket: str, key: str, *, timeout: float = 5.0) -> int:
    """``kv.delete`` that returns the tombstone's revision (nats-py's returns only ``True``)."""
    try:
        ack = await _publish(conn, bucket, key, b"", timeout, {"KV-Operation": "DEL"})
    except Exception as exc:
        if await _missing_bucket(conn, bucket):
            raise NotProvisioned(f"bucket {bucket}") from exc
        raise translate_error(exc, f"delete from {bucket}", subject=key, timeout=timeout) from exc
    return int(ack.seq)


async def scan_latest(
    conn: Connection, bucket: str, key_filter: str = ">", *, timeout: float = 5.0
) -> dict[str, KVEntry]:
    """Latest live entry of every key matching ``key_filter`` (NATS wildcards), in one round trip.

    Uses a JetStream direct multi-get (``multi_last``); falls back to an ephemeral consumer that
    delivers the last message per subject when the bucket holds more keys than one batch.
    """
    if conn.scoped:  # the multi-get names its keys in the body, which a scoped identity may not use
        return await _consumer_scan(conn, bucket, key_filter, timeout=timeout)
    prefix = f"$KV.{bucket}."
    nc = conn.nc
    queue: asyncio.Queue[Msg] = asyncio.Queue()

    async def on_msg(msg: Msg) -> None:
        queue.put_nowait(msg)

    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, cb=on_msg)
    out: dict[str, KVEntry] = {}
    try:
        request = {"multi_last": [prefix + key_filter], "batch": DIRECT_BATCH}
        await nc.publish(f"$JS.API.DIRECT.GET.{_stream(bucket)}", json.dumps(request).encode(), reply=inbox)
        while True:
            try:
                msg = await wait_for(queue.get(), timeout)
            except TimeoutError as exc:
                if await _missing_bucket(conn, bucket):
                    raise NotProvisioned(f"bucket {bucket}") from exc
                raise translate_error(exc, f"read {bucket}", subject=key_filter, timeout=timeout) from exc
            reply = parse_direct_reply(prefix, msg.headers, msg.data)
            if reply.kind is Reply.ENTRY and reply.entry is not None:
                latest = reply.entry
                if latest.value is not None:
                    out[latest.key] = KVEntry(latest.key, latest.value, latest.revision)
            elif reply.kind in (Reply.END, Reply.EMPTY):
                return out
            elif reply.kind is Reply.UNAVAILABLE:
                raise NotProvisioned(f"bucket {bucket}")
            else:  # a truncated batch, or an answer not understood: read with a consumer instead
                return await _consumer_scan(conn, bucket, key_filter, timeout=timeout)
    finally:
        await sub.unsubscribe()


async def _consumer_scan(
    conn: Connection, bucket: str, key_filter: str, *, timeout: float
) -> dict[str, KVEntry]:
    prefix = f"$KV.{bucket}."
    stream = _stream(bucket)
    # A scoped identity may create only the consumer named after its credential, with the filter
    # in the API subject (mesh/protocol/permissions.py); everyone else gets an ephemeral one.
    name = conn.credential_id
    config = ConsumerConfig(
        name=name,
        filter_subject=prefix + key_filter if name else None,
        ack_policy=AckPolicy.NONE,
        deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
        inactive_threshold=30.0,
        headers_only=False,
    )
    try:
        if name is None:
            psub = await conn.js.pull_subscribe(prefix + key_filter, stream=stream, config=config)
        else:
            with contextlib.suppress(Exception):  # one left by an earlier scan that was cut short
                await conn.js.delete_consumer(stream, name)
            await conn.js.add_consumer(stream, config)
            psub = await conn.js.pull_subscribe_bind(name, stream=stream)
        info = await psub.consumer_info()
    except Exception as exc:
        raise translate_error(exc, f"read {bucket}", subject=key_filter, timeout=timeout) from exc
    out: dict[str, KVEntry] = {}
    remaining = info.num_pending or 0
    try:
        while remaining > 0:
            msgs = await psub.fetch(min(remaining, 4096), timeout=timeout)
            for msg in msgs:
                key = msg.subject[len(prefix) :]
                if is_delete(msg.headers):
                    out.pop(key, None)
                else:
                    out[key] = KVEntry(key, msg.data, msg.metadata.sequence.stream)
                remaining = msg.metadata.num_pending
    finally:
        await psub.unsubscribe()
        if name is not None:
            with contextlib.suppress(Exception):
                await conn.js.delete_consumer(stream, name)
    return out


async def read_latest(
    conn: Connection, bucket: str, keys: list[str], *, timeout: float = 5.0
) -> dict[str, KVLatest] | None:
    """The latest state of each of ``keys`` (exact keys), tombstones included, in one round trip.

    One JetStream direct multi-get instead of one ``kv.get`` per key. Keys never written are
    absent from the result. Returns ``None`` when the server answers in a way this does not
    understand (too old for multi-get, say), so the caller can fall back to one read per key;
    raises a MeshError (timeout, connection) otherwise.
    """
    prefix = f"$KV.{bucket}."
    nc = conn.nc
    queue: asyncio.Queue[Msg] = asyncio.Queue()

    async def on_msg(msg: Msg) -> None:
        queue.put_nowait(msg)

    inbox = nc.new_inbox()
    out: dict[str, KVLatest] = {}
    try:
        sub = await nc.subscribe(inbox, cb=on_msg)
    except Exception as exc:
        raise translate_error(exc, f"read {bucket}", timeout=timeout) from exc
    try:
        request = {"multi_last": [prefix + k for k in keys], "batch": max(len(keys), 1)}
        await nc.publish(f"$JS.API.DIRECT.GET.{_stream(bucket)}", json.dumps(request).encode(), reply=inbox)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                msg = await wait_for(queue.get(), max(deadline - loop.time(), 0.0))
            except TimeoutError as exc:
                if await _missing_bucket(conn, bucket):
                    raise NotProvisioned(f"bucket {bucket}") from exc
                raise translate_error(exc, f"read {bucket}", timeout=timeout) from exc
            reply = parse_direct_reply(prefix, msg.headers, msg.data)
            if reply.kind is Reply.ENTRY and reply.entry is not None:
                out[reply.entry.key] = reply.entry
            elif reply.kind in (Reply.END, Reply.EMPTY):
                return out
            elif reply.kind is Reply.UNAVAILABLE:
                raise NotProvisioned(f"bucket {bucket}")
            else:
                return None
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()

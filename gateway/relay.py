"""Relaying an upstream's streamed body chunk by chunk, ending at once when a kill cuts it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from gateway.errors import UpstreamFailed
from gateway.streams import LiveStream
from gateway.upstream import UpstreamResponse

__all__ = ["relay_chunks"]

_END = object()


async def relay_chunks(resp: UpstreamResponse, live: LiveStream | None) -> AsyncIterator[bytes]:
    """Yield the body as it arrives; stop early when ``live`` is cut (the caller adds the error event).

    Raises :class:`UpstreamFailed` when the upstream breaks off mid-stream. The upstream is read by
    a task of its own, so that waiting for the next chunk can be interrupted by the kill.
    """
    if live is None:
        async for chunk in resp.chunks():
            yield chunk
        return
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=64)

    async def pump() -> None:
        try:
            async for chunk in resp.chunks():
                await queue.put(chunk)
            await queue.put(_END)
        except UpstreamFailed as exc:
            await queue.put(exc)

    task = asyncio.create_task(pump())
    waker = asyncio.create_task(live.woken.wait())
    try:
        while live.cut is None:
            if queue.empty():
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait({getter, waker}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    return
                item = getter.result()
            else:
                item = queue.get_nowait()
            if item is _END:
                return
            if isinstance(item, UpstreamFailed):
                raise item
            yield item
    finally:
        waker.cancel()
        task.cancel()
        with contextlib.suppress(BaseException):
            await task

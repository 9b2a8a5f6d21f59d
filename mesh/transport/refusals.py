"""Refused publishes on one connection: a call whose publish the server refused fails at once."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable
from typing import TypeVar

from mesh.errors import PermissionDenied
from mesh.transport.connection import Connection

__all__ = ["Refusals"]

T = TypeVar("T")


class Refusals:
    """Watches one connection's asynchronous errors for permission violations.

    nats-server answers a refused publish with an ``-ERR`` on the connection, never on the request,
    which would just time out; :meth:`guard` turns that into an immediate :class:`PermissionDenied`.
    """

    def __init__(self, conn: Connection, *, remember: int = 64) -> None:
        self._conn = conn
        #: The latest violations, and how many there were in all: a guarded call looks only at
        #: those after it started.
        self._texts: deque[str] = deque(maxlen=remember)
        self._count = 0
        self._event = asyncio.Event()
        self._token = conn.on_error(self._on_error)

    def close(self) -> None:
        self._conn.remove_listener(self._token)

    def _on_error(self, exc: BaseException) -> None:
        text = str(exc)
        if "permissions violation" in text.lower():
            self._texts.append(text)
            self._count += 1
            self._event.set()

    def _refused(self, seen: int, wanted: str) -> str | None:
        fresh = min(self._count - seen, len(self._texts))
        for text in list(self._texts)[len(self._texts) - fresh :] if fresh > 0 else []:
            if wanted in text.lower():
                return text
        return None

    async def guard(self, operation: str, awaitable: Awaitable[T], *, publishes_to: str) -> T:
        """Await ``awaitable``, failing at once with PermissionDenied if the server refuses it.

        Only a refused publish to ``publishes_to`` counts: a refused subscription (to the
        acknowledgements, say) arrives on the same connection but must not fail a kill that
        the server did accept.
        """
        wanted = f'publish to "{publishes_to}"'.lower()
        seen = self._count
        task = asyncio.ensure_future(awaitable)
        while True:
            self._event.clear()
            refused = self._refused(seen, wanted)
            if refused is not None:
                break
            waiter = asyncio.ensure_future(self._event.wait())
            try:
                await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
            if task.done():
                return task.result()
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        raise PermissionDenied(operation, subject=publishes_to, detail=refused)

"""Streams in flight, so that a kill cuts them: each is told at once, from the kill's own callback."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from gateway.errors import Refused
from gateway.keys import Identity
from gateway.kills import InForce

__all__ = ["LiveStream", "StreamRegistry"]


class LiveStream:
    """One proxied stream: ``cut`` is set (and the waiter woken) when its agent is killed."""

    def __init__(self, ident: Identity) -> None:
        self.ident = ident
        self.cut: Refused | None = None
        self.woken = asyncio.Event()

    def kill(self, reason: Refused) -> None:
        if self.cut is None:
            self.cut = reason
            self.woken.set()


class StreamRegistry:
    def __init__(self, check: Callable[[Identity], None]) -> None:
        #: Raises Refused when the identity may not act (the tracker's check).
        self._check = check
        self._live: set[LiveStream] = set()

    def open(self, ident: Identity) -> LiveStream:
        s = LiveStream(ident)
        self._live.add(s)
        return s

    def close(self, s: LiveStream) -> None:
        self._live.discard(s)

    def __len__(self) -> int:
        return len(self._live)

    def on_kill(self, _held: InForce) -> None:
        """A record came into force: cut every stream it (or any other record) now refuses."""
        self.recheck()

    def recheck(self) -> None:
        for s in list(self._live):
            try:
                self._check(s.ident)
            except Refused as exc:
                s.kill(exc)

"""Heartbeats as evidence: what each instance of a namespace published from a point on.

A "nothing happened" check needs proof that the system had the chance to act. An instance's own
heartbeat, published after the moment in question, is that proof: its loop ran and it was
connected, so a kill it should have honoured, or work it should not have done, would show.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from mesh.protocol.codec import decode
from mesh.protocol.models import Heartbeat
from mesh.protocol.subjects import Namespace
from tests.waiting import HANG, await_until


class HeartbeatWatch:
    """Collects heartbeats per instance from the moment it is entered."""

    def __init__(self) -> None:
        self.seen: dict[str, list[Heartbeat]] = defaultdict(list)

    async def _on(self, msg: Msg) -> None:
        hb = decode(Heartbeat, msg.data)
        self.seen[hb.instance].append(hb)

    def count(self, instance: str) -> int:
        return len(self.seen[instance])

    def last(self, instance: str) -> Heartbeat | None:
        got = self.seen[instance]
        return got[-1] if got else None

    async def more(self, instances: list[str], n: int = 1, timeout: float = HANG) -> None:
        """Wait until every one of ``instances`` has published ``n`` more heartbeats than now."""
        marks = {i: self.count(i) for i in instances}
        await await_until(
            lambda: all(self.count(i) >= m + n for i, m in marks.items()),
            timeout,
            f"{n} more heartbeat(s) from each of {sorted(instances)}",
        )


@contextlib.asynccontextmanager
async def watching(nc: NATS, ns: Namespace) -> AsyncIterator[HeartbeatWatch]:
    watch = HeartbeatWatch()
    sub = await nc.subscribe(ns.heartbeat_wildcard, cb=watch._on)
    await nc.flush()
    try:
        yield watch
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()

"""The operator side's own eyes: a separate connection that timestamps records, halts and resumes."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import nats
from nats.aio.msg import Msg

__all__ = ["Observer"]


class Observer:
    """A separate connection in the operator's process that timestamps what the operator sees."""

    def __init__(self) -> None:
        self.record: list[float] = []
        self.halted: list[float] = []
        self.resumed: list[float] = []
        self.halted_evt = asyncio.Event()
        self.resumed_evt = asyncio.Event()
        self.expect = 0
        self.nc: Any = None

    async def start(self, url: str, prefix: str) -> None:
        self.nc = await nats.connect(url, name="bench-observer")

        async def on_record(_msg: Msg) -> None:
            self.record.append(time.time())

        async def on_halted(_msg: Msg) -> None:
            self.halted.append(time.time())
            if len(self.halted) >= self.expect:
                self.halted_evt.set()

        async def on_resumed(_msg: Msg) -> None:
            self.resumed.append(time.time())
            if len(self.resumed) >= self.expect:
                self.resumed_evt.set()

        await self.nc.subscribe(f"{prefix}.ctl.>", cb=on_record)
        await self.nc.subscribe(f"{prefix}.audit.*.*.*.*.halted", cb=on_halted, pending_msgs_limit=2_000_000)
        await self.nc.subscribe(
            f"{prefix}.audit.*.*.*.*.resumed", cb=on_resumed, pending_msgs_limit=2_000_000
        )
        await self.nc.flush()

    def reset(self, expect: int) -> None:
        self.record, self.halted, self.resumed = [], [], []
        self.halted_evt, self.resumed_evt = asyncio.Event(), asyncio.Event()
        self.expect = expect

    async def close(self) -> None:
        if self.nc is not None:
            await self.nc.close()

"""Asyncio helpers that keep cancellation intact."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

__all__ = ["wait_for"]

T = TypeVar("T")


async def wait_for(awaitable: Awaitable[T], timeout: float | None) -> T:
    """``asyncio.wait_for`` without its Python 3.11 flaw.

    On 3.11, a cancel that races ``wait_for``'s own timeout can come out as ``TimeoutError``; a
    loop that treats timeouts as routine then swallows the cancel and never stops (we saw a
    controller hang on shutdown that way). ``asyncio.timeout`` tells its own expiry apart from
    an outside cancel, so the cancel always propagates.
    """
    async with asyncio.timeout(timeout):
        return await awaitable

"""The client the gateway calls upstreams with; aiohttp errors become :class:`UpstreamFailed`."""

# aiohttp rather than httpx: httpx's per-request cost was most of the gateway's overhead (profiled).

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping

import aiohttp

from gateway.errors import UpstreamFailed

__all__ = ["UpstreamClient", "UpstreamResponse"]

#: Response headers never passed back: hop-by-hop, and the framing the ASGI server redoes.
_DROP = frozenset({"content-length", "connection", "keep-alive", "transfer-encoding", "content-encoding"})


class UpstreamResponse:
    """Status and headers are in; the body is read with :meth:`read` or :meth:`chunks`."""

    def __init__(self, resp: aiohttp.ClientResponse, upstream: str) -> None:
        self._resp = resp
        self.upstream = upstream
        self.status = resp.status
        self.headers: dict[str, str] = {k.lower(): v for k, v in resp.headers.items()}

    @property
    def forward_headers(self) -> dict[str, str]:
        return {k: v for k, v in self.headers.items() if k not in _DROP}

    @property
    def is_sse(self) -> bool:
        return self.headers.get("content-type", "").startswith("text/event-stream")

    async def read(self) -> bytes:
        try:
            return await self._resp.read()
        except TimeoutError:
            raise UpstreamFailed(self.upstream, "the response stalled", 504) from None
        except aiohttp.ClientError as exc:
            raise UpstreamFailed(self.upstream, f"the response broke off ({type(exc).__name__})") from None

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives, chunk by chunk (no buffering up to a line or an event)."""
        try:
            async for chunk in self._resp.content.iter_any():
                yield chunk
        except TimeoutError:
            raise UpstreamFailed(self.upstream, "the stream stalled", 504) from None
        except aiohttp.ClientError as exc:
            raise UpstreamFailed(self.upstream, f"the stream broke off ({type(exc).__name__})") from None

    def close(self) -> None:
        self._resp.close()


class UpstreamClient:
    """One connection pool per upstream; ``open`` returns once the response head is in."""

    def __init__(self, name: str, *, connect_timeout: float, read_timeout: float) -> None:
        self.name = name
        self._timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout, sock_read=read_timeout)
        self._session: aiohttp.ClientSession | None = None

    def _get(self) -> aiohttp.ClientSession:
        # Created lazily: a session must be made inside the event loop that uses it.
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=512, limit_per_host=0),
                auto_decompress=False,
                trust_env=False,
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    async def open(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None
    ) -> UpstreamResponse:
        try:
            resp = await self._get().request(
                method, url, headers=dict(headers), data=body, allow_redirects=False
            )
        except TimeoutError:
            raise UpstreamFailed(self.name, "no answer in time", 504) from None
        except aiohttp.ClientError as exc:
            raise UpstreamFailed(self.name, type(exc).__name__) from None
        return UpstreamResponse(resp, self.name)

    async def aclose(self) -> None:
        if self._session is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._session.close(), 5.0)

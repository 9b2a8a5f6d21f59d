"""A raw keep-alive HTTP/1.1 client for the HTTP benches, so that what is timed is the server.

Shared by :mod:`bench.gateway_overhead` and :mod:`bench.http_api`: latency series, throughput over
several connections, and their common command-line arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bench.support.machine import package_versions

__all__ = ["Client", "Reply", "add_http_args", "http_params", "latencies", "throughput"]


@dataclass
class Reply:
    status: int
    body: bytes
    first_byte: float  # perf_counter when the head (or, chunked, the first chunk) arrived


class Client:
    """One keep-alive HTTP/1.1 connection; just enough protocol for these requests."""

    def __init__(self, port: int, key: str | None = None) -> None:
        self.port, self.key = port, key
        self.reader: asyncio.StreamReader
        self.writer: asyncio.StreamWriter

    async def open(self) -> Client:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    def close(self) -> None:
        self.writer.close()

    def send(self, method: str, path: str, body: bytes = b"") -> None:
        auth = f"authorization: Bearer {self.key}\r\n" if self.key else ""
        self.writer.write(
            f"{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n{auth}"
            f"content-length: {len(body)}\r\n\r\n".encode()
            + body
        )

    async def head(self) -> tuple[int, dict[bytes, bytes], float]:
        raw = await self.reader.readuntil(b"\r\n\r\n")
        at = time.perf_counter()
        lines = raw.split(b"\r\n")
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            headers[k.strip().lower()] = v.strip()
        return int(lines[0].split(b" ")[1]), headers, at

    async def chunk(self) -> bytes:
        size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
        data = await self.reader.readexactly(size + 2)
        return data[:-2]

    async def answer(self) -> Reply:
        """The reply to the request sent last: by content-length, or chunk by chunk to the end."""
        status, headers, at = await self.head()
        if b"content-length" in headers:
            data = await self.reader.readexactly(int(headers[b"content-length"]))
        else:
            parts = []
            first = None
            while part := await self.chunk():
                first = first or time.perf_counter()
                parts.append(part)
            data = b"".join(parts)
            at = first or at
        if headers.get(b"connection") == b"close":
            self.close()
            await self.open()
        return Reply(status, data, at)

    async def request(self, method: str, path: str, body: bytes = b"") -> Reply:
        self.send(method, path, body)
        return await self.answer()


async def latencies(
    c: Client,
    method: str,
    path: str,
    body: bytes,
    n: int,
    *,
    ttfb: bool = False,
    check: Callable[[Reply], None] | None = None,
) -> list[float]:
    """ms of ``n`` requests one after another (to the first byte with ``ttfb``), after n/10 to warm up."""
    out = []
    for i in range(n + n // 10):
        t0 = time.perf_counter()
        r = await c.request(method, path, body)
        elapsed = ((r.first_byte if ttfb else time.perf_counter()) - t0) * 1000
        assert r.status == 200, r.body[:300]
        if check is not None:
            check(r)
        if i >= n // 10:  # the first tenth warms up
            out.append(elapsed)
    return out


async def throughput(
    port: int, keys: Sequence[str | None], seconds: float, method: str, path: str, body: bytes = b""
) -> float:
    """Requests/s for ``seconds`` over one connection per key, each sending as fast as answered."""
    count = 0
    stop_at = time.perf_counter() + seconds

    async def worker(key: str | None) -> None:
        nonlocal count
        c = await Client(port, key).open()
        try:
            while time.perf_counter() < stop_at:
                r = await c.request(method, path, body)
                assert r.status == 200
                count += 1
        finally:
            c.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in keys))
    return count / (time.perf_counter() - started)


def add_http_args(
    parser: argparse.ArgumentParser, *, kills_help: str, seconds_help: str, concurrency_help: str
) -> None:
    parser.add_argument("--n", type=int, default=2000, help="requests per latency series")
    parser.add_argument("--kills", type=int, default=50, help=kills_help)
    parser.add_argument("--seconds", type=float, default=5.0, help=seconds_help)
    parser.add_argument("--concurrency", type=int, default=16, help=concurrency_help)


def http_params(args: Any, dists: Sequence[str]) -> dict[str, Any]:
    """The JSON ``params`` of an HTTP bench: its arguments and the versions of the HTTP stack."""
    return {
        "n": args.n,
        "kills": args.kills,
        "seconds": args.seconds,
        "concurrency": args.concurrency,
        "versions": package_versions(dists),
    }

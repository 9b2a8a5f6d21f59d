"""``GET /metrics`` over asyncio: the scrape runs in the controller's loop, so it reads a consistent fleet."""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

__all__ = ["MetricsServer"]

log = structlog.get_logger("controller.metrics")

_MAX_HEAD = 16 * 1024


def _response(status: str, body: bytes, content_type: str = "text/plain; charset=utf-8") -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


class MetricsServer:
    """A minimal HTTP/1.1 server: ``/metrics`` in the Prometheus text format, anything else 404."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        self.registry = registry
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        """Listen; returns the bound port (``port`` 0 picks a free one)."""
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        log.info("metrics listening", host=self.host, port=self.port, path="/metrics")
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10.0)
            writer.write(self._answer(head[:_MAX_HEAD]))
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass  # a client that went away or never sent a request: nothing to answer
        except Exception as exc:  # a scrape must never take the controller down
            log.warning("metrics request failed", error=repr(exc)[:300])
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _answer(self, head: bytes) -> bytes:
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = line.split(" ")
        if len(parts) != 3:
            return _response("400 Bad Request", b"bad request line\n")
        method, target, _ = parts
        if method != "GET":
            return _response("405 Method Not Allowed", b"only GET /metrics\n")
        if target.split("?", 1)[0] != "/metrics":
            return _response("404 Not Found", b"not found: the metrics are at /metrics\n")
        return _response("200 OK", generate_latest(self.registry), CONTENT_TYPE_LATEST)

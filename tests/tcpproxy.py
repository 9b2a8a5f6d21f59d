"""A TCP proxy for tests, between clients and a NATS server, that cuts, stalls, blackholes or holds its links.

- ``cut()``: drop every connection (a reset) and refuse new ones until ``restore()``;
- ``restore(hold=…)``: accept again; with ``hold``, the next client's handshake goes through (INFO,
  CONNECT, the first PONG) but everything the server sends after it is held for ``hold`` seconds:
  nats-py then counts itself connected while its post-reconnect flush, and so its
  ``reconnected_cb``, waits;
- ``stall()`` / ``flow()``: forward nothing either way until ``flow()``, then deliver what was held;
- ``blackhole()``: the open connections swallow every byte from now on and are never closed (a
  half-open link: the peer is gone and no FIN or RST ever arrives); new connections work.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable

__all__ = ["TcpProxy"]


class _Link:
    def __init__(self, writers: tuple[asyncio.StreamWriter, asyncio.StreamWriter]) -> None:
        self.writers = writers
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.dead = False  # blackholed: read and drop


class TcpProxy:
    """Forwards 127.0.0.1:port to ``upstream_port``, in a thread of its own."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.loop = asyncio.new_event_loop()
        self._accepting = True
        self._hold = 0.0
        self._links: set[_Link] = set()
        self._tasks: set[asyncio.Task[None]] = set()  # strong references: a blackholed link lives on
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = int(sock.getsockname()[1])
        self._sock = sock
        self._thread = threading.Thread(target=self._run, daemon=True, name="tcp-proxy")
        self._thread.start()

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._serve())
        self.loop.run_forever()

    async def _serve(self) -> None:
        self._server = await asyncio.start_server(self._client, sock=self._sock)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._accepting:
            writer.transport.abort()
            return
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        link = _Link((writer, up_w))
        self._links.add(link)
        hold = self._hold
        self._hold = 0.0  # once: the first client after restore(hold=…) only
        me = asyncio.current_task()
        if me is not None:
            self._tasks.add(me)
        try:
            await asyncio.gather(self._pipe(link, reader, up_w), self._pipe(link, up_r, writer, hold))
        except asyncio.CancelledError:
            pass  # close(): the proxy is going away, and asyncio's stream callback would log it
        finally:
            self._links.discard(link)
            if me is not None:
                self._tasks.discard(me)

    async def _pipe(
        self, link: _Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, hold: float = 0.0
    ) -> None:
        seen = b""  # server bytes so far, while holding: all of them already forwarded
        try:
            while data := await reader.read(65536):
                await link.flowing.wait()
                if link.dead:
                    continue
                at = (seen + data).find(b"PONG\r\n") if hold else -1
                if at >= 0:  # the handshake's PONG: pass it, then hold what follows
                    cut = at + 6 - len(seen)
                    writer.write(data[:cut])
                    await writer.drain()
                    await asyncio.sleep(hold)  # the fault itself, not a wait for something
                    data, hold = data[cut:], 0.0
                elif hold:
                    seen += data
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            if not link.dead:
                writer.transport.abort()

    def _call(self, fn: Callable[[], None]) -> None:
        done = threading.Event()

        def run() -> None:
            try:
                fn()
            finally:
                done.set()

        self.loop.call_soon_threadsafe(run)
        done.wait(5)

    def cut(self) -> None:
        def do() -> None:
            self._accepting = False
            for link in list(self._links):
                link.dead = False
                link.flowing.set()
                for w in link.writers:
                    w.transport.abort()
            self._links.clear()

        self._call(do)

    def restore(self, hold: float = 0.0) -> None:
        def do() -> None:
            self._hold = hold
            self._accepting = True

        self._call(do)

    def stall(self) -> None:
        def do() -> None:
            for link in self._links:
                link.flowing.clear()

        self._call(do)

    def flow(self) -> None:
        def do() -> None:
            for link in self._links:
                link.flowing.set()

        self._call(do)

    def blackhole(self) -> int:
        """Make every open link half-open for good; returns how many."""
        count = 0

        def do() -> None:
            nonlocal count
            for link in list(self._links):
                link.dead = True
                link.flowing.set()
                count += 1
            self._links.clear()  # forgotten: no later cut() closes them either

        self._call(do)
        return count

    def close(self) -> None:
        self.cut()

        async def shut() -> None:
            self._server.close()
            me = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not me]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.loop.stop()

        asyncio.run_coroutine_threadsafe(shut(), self.loop)
        self._thread.join(5)

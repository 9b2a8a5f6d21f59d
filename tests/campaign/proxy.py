"""A TCP proxy between one agent process and a NATS server that cuts, stalls or blackholes its links.

- ``cut(seconds)``: drop every connection (a reset) and refuse new ones for a while;
- ``stall(seconds)``: forward nothing either way for a while, then deliver what was held;
- ``blackhole()``: the open connections swallow every byte from now on and are never closed (a
  half-open link: the peer is gone and no FIN or RST ever arrives); new connections work.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable


class _Link:
    def __init__(self, writers: tuple[asyncio.StreamWriter, asyncio.StreamWriter]) -> None:
        self.writers = writers
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.dead = False  # blackholed: read and drop


class FaultProxy:
    """Forwards 127.0.0.1:port to ``upstream_port``, in a thread of its own."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.loop = asyncio.new_event_loop()
        self._accepting = True
        self._links: set[_Link] = set()
        self._tasks: set[asyncio.Task[None]] = set()  # strong references: a blackholed link lives on
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = int(sock.getsockname()[1])
        self._sock = sock
        self._thread = threading.Thread(target=self._run, daemon=True, name="campaign-proxy")
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
        me = asyncio.current_task()
        if me is not None:
            self._tasks.add(me)
        try:
            await asyncio.gather(self._pipe(link, reader, up_w), self._pipe(link, up_r, writer))
        except asyncio.CancelledError:
            pass  # close(): the proxy is going away, and asyncio's stream callback would log it
        finally:
            self._links.discard(link)
            if me is not None:
                self._tasks.discard(me)

    async def _pipe(self, link: _Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                await link.flowing.wait()
                if link.dead:
                    continue
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

    def accept(self) -> None:
        def do() -> None:
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

"""A TCP proxy for tests that can cut its clients and hold the server's replies after a reconnect."""

from __future__ import annotations

import asyncio
import socket
import threading


class HoldingProxy:
    """Forwards 127.0.0.1:port to a NATS server, in a thread of its own.

    ``cut()`` drops every client and refuses new ones until ``restore(hold=…)``. With ``hold``,
    a reconnecting client's handshake goes through (INFO, CONNECT, the first PONG) but everything
    the server sends after it is held for ``hold`` seconds: nats-py then counts itself connected
    while its post-reconnect flush, and so its ``reconnected_cb``, waits.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.loop = asyncio.new_event_loop()
        self._accepting = True
        self._hold = 0.0
        self._writers: set[asyncio.StreamWriter] = set()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = int(sock.getsockname()[1])
        self._sock = sock
        self._thread = threading.Thread(target=self._run, daemon=True)
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
            writer.close()
            return
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self._writers |= {writer, up_w}
        hold = self._hold
        self._hold = 0.0  # once: the first reconnect only
        await asyncio.gather(self._pipe(reader, up_w, 0.0), self._pipe(up_r, writer, hold))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, hold: float) -> None:
        seen = b""  # server bytes so far, while holding: all of them already forwarded
        try:
            while data := await reader.read(65536):
                at = (seen + data).find(b"PONG\r\n") if hold else -1
                if at < 0:
                    if hold:
                        seen += data
                    writer.write(data)
                else:  # the handshake's PONG: pass it, then hold what follows
                    cut = at + 6 - len(seen)
                    writer.write(data[:cut])
                    await writer.drain()
                    await asyncio.sleep(hold)
                    writer.write(data[cut:])
                    hold = 0.0
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    def _call(self, fn: object) -> None:
        done = threading.Event()

        def run() -> None:
            try:
                fn()  # type: ignore[operator]
            finally:
                done.set()

        self.loop.call_soon_threadsafe(run)
        done.wait(5)

    def cut(self) -> None:
        def do() -> None:
            self._accepting = False
            for w in list(self._writers):
                w.transport.abort()
            self._writers.clear()

        self._call(do)

    def restore(self, hold: float = 0.0) -> None:
        def do() -> None:
            self._hold = hold
            self._accepting = True

        self._call(do)

    def close(self) -> None:
        self.cut()
        self.loop.call_soon_threadsafe(self.loop.stop)

"""The egress proxy: CONNECT tunnels and plain-HTTP forwarding, the virtual key as proxy credentials.

``HTTPS_PROXY=http://KEY@gateway:8791`` puts every HTTP call of a process behind the kill switch,
whatever library makes it. A killed agent's new connections get 403; its open tunnels are closed
the moment the kill lands. Each plain-HTTP request is forwarded on a connection of its own
(``Connection: close``), so every request is checked.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
from dataclasses import dataclass, field

import structlog

from gateway.context import Gateway
from gateway.errors import GatewayError, Refused, UnknownKey
from gateway.formats import mesh_details
from gateway.keys import Identity
from gateway.kills import InForce

__all__ = ["EgressProxy"]

log = structlog.get_logger("gateway.egress")

MAX_HEAD = 64 * 1024
HEAD_TIMEOUT = 10.0
_HOP = frozenset({b"proxy-authorization", b"proxy-connection", b"connection", b"keep-alive"})


class _BadRequest(Exception):
    pass


@dataclass(eq=False)
class _Tunnel:
    ident: Identity
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    def close(self) -> None:
        for w in self.writers:
            w.transport.abort()


def _credentials(headers: dict[bytes, bytes]) -> tuple[str | None, str | None]:
    """(key, instance) from ``Proxy-Authorization``: Basic ``KEY[:INSTANCE]`` or Bearer ``KEY``.

    The instance rides as the proxy password (``http://KEY:w1@gateway:8791``) because clients
    cannot add headers to a CONNECT; an ``X-Mesh-Instance`` header on plain HTTP works too.
    """
    value = headers.get(b"proxy-authorization", b"").decode("latin-1").strip()
    scheme, _, cred = value.partition(" ")
    if scheme.lower() == "bearer":
        return cred.strip() or None, None
    if scheme.lower() != "basic":
        return None, None
    try:
        user, _, password = base64.b64decode(cred.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    return user or None, password or None


def _response(status: int, reason: str, body: dict[str, object], extra: str = "") -> bytes:
    data = json.dumps(body).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(data)}\r\n"
        f"connection: close\r\n{extra}\r\n"
    )
    return head.encode() + data


def _error(exc: GatewayError) -> bytes:
    body: dict[str, object] = {"error": {"message": str(exc), "type": exc.kind, "mesh": mesh_details(exc)}}
    if isinstance(exc, UnknownKey):
        return _response(
            407, "Proxy Authentication Required", body, 'proxy-authenticate: Basic realm="mesh"\r\n'
        )
    return _response(exc.status, "Forbidden" if exc.status == 403 else "Error", body)


class EgressProxy:
    def __init__(self, gw: Gateway, *, connect_timeout: float = 10.0) -> None:
        self.gw = gw
        self.connect_timeout = connect_timeout
        self._tunnels: set[_Tunnel] = set()
        self._server: asyncio.Server | None = None
        gw.tracker.on_kill.append(self._on_kill)
        gw.tracker.on_fail_closed.append(self._recheck)

    async def start(self, host: str, port: int) -> int:
        self._server = await asyncio.start_server(self._handle, host, port, limit=MAX_HEAD)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        for t in list(self._tunnels):
            t.close()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)

    @property
    def open_tunnels(self) -> int:
        return len(self._tunnels)

    def _on_kill(self, _held: InForce) -> None:
        self._recheck()

    def _recheck(self) -> None:
        for t in list(self._tunnels):
            try:
                self.gw.tracker.check(t.ident.agent, t.ident.instance)
            except Refused as exc:
                log.info("tunnel closed by a kill", agent=t.ident.agent_uri, instance=t.ident.instance)
                self.gw.refused(t.ident, "egress", exc)
                t.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._serve(reader, writer)
        except (_BadRequest, asyncio.LimitOverrunError, asyncio.IncompleteReadError, ValueError) as exc:
            self.gw.counters.rejected["egress_bad_request"] = (
                self.gw.counters.rejected.get("egress_bad_request", 0) + 1
            )
            with contextlib.suppress(Exception):
                writer.write(
                    _response(400, "Bad Request", {"error": {"message": f"bad proxy request: {exc}"}})
                )
                await writer.drain()
        except (ConnectionError, TimeoutError):
            pass
        except Exception as exc:  # one connection's bug must not stop the proxy
            log.warning("egress connection failed", error=f"{type(exc).__name__}: {exc}"[:300])
        finally:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
        lines = head[:-4].split(b"\r\n")
        try:
            method, target, version = lines[0].split(b" ")
        except ValueError:
            raise _BadRequest("malformed request line") from None
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                raise _BadRequest("malformed header line")
            headers[name.strip().lower()] = value.strip()
        gw = self.gw
        try:
            key, instance = _credentials(headers)
            instance = headers.get(b"x-mesh-instance", b"").decode("latin-1") or instance
            ident = await gw.identify(key, instance)
            await gw.admit(ident, "egress")
        except GatewayError as exc:
            if not isinstance(exc, Refused):
                gw.rejected(exc)
            writer.write(_error(exc))
            await writer.drain()
            return
        if method == b"CONNECT":
            host, port = _host_port(target.decode("latin-1"), 443)
            await self._tunnel(ident, reader, writer, host, port, b"")
            return
        # Plain HTTP: absolute-form target, rewritten to origin-form for the server.
        url = target.decode("latin-1")
        if not url.startswith("http://"):
            raise _BadRequest("only CONNECT and absolute http:// URLs are proxied")
        rest = url[len("http://") :]
        authority, slash, path = rest.partition("/")
        host, port = _host_port(authority, 80)
        out = [b" ".join([method, b"/" + path.encode("latin-1") if slash else b"/", version])]
        out += [line for line in lines[1:] if line.partition(b":")[0].strip().lower() not in _HOP]
        out.append(b"connection: close")
        await self._tunnel(ident, reader, writer, host, port, b"\r\n".join(out) + b"\r\n\r\n")

    async def _tunnel(
        self,
        ident: Identity,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        host: str,
        port: int,
        first: bytes,
    ) -> None:
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(host, port), self.connect_timeout
            )
        except (OSError, TimeoutError) as exc:
            self.gw.counters.upstream_errors += 1
            why = f"cannot reach {host}:{port} ({type(exc).__name__})"
            body: dict[str, object] = {"error": {"message": why}}
            writer.write(_response(502, "Bad Gateway", body))
            await writer.drain()
            return
        self.gw.meter.add(ident, {"egress_connections": 1})
        self.gw.counters.proxied += 1
        tunnel = _Tunnel(ident, [writer, up_writer])
        self._tunnels.add(tunnel)
        try:
            if first:
                up_writer.write(first)
            else:
                writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self._tunnels.discard(tunnel)
            up_writer.transport.abort()


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    try:
        while chunk := await src.read(65536):
            dst.write(chunk)
            await dst.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            if dst.can_write_eof():
                dst.write_eof()


def _host_port(authority: str, default: int) -> tuple[str, int]:
    if authority.startswith("["):  # [v6]:port
        host, _, rest = authority[1:].partition("]")
        port = rest.lstrip(":")
    else:
        host, _, port = authority.rpartition(":") if ":" in authority else (authority, "", "")
    if not host:
        raise _BadRequest(f"no host in {authority!r}")
    if port and not port.isdigit():
        raise _BadRequest(f"bad port in {authority!r}")
    return host, int(port) if port else default

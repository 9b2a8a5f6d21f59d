"""Connecting to NATS: bounded first connect, jittered reconnects, drain on close, error mapping."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

import structlog
from nats.aio.client import Client as NATS
from nats.aio.client import Server
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext

from mesh.errors import (
    AuthenticationFailed,
    ConnectionFailed,
)
from mesh.protocol.actorsig import Signer
from mesh.protocol.identity import inbox_prefix, parse_token
from mesh.protocol.subjects import Namespace
from mesh.runtime.aio import wait_for
from mesh.runtime.logs import ensure_configured
from mesh.runtime.settings import Settings
from mesh.transport.natserrors import (
    is_auth_error,
    note_permission_violation,
    recent_permission_violation,
    translate_error,
)

__all__ = [
    "Connection",
    "connect",
    "jittered_reconnect",
    "note_permission_violation",
    "recent_permission_violation",
    "translate_error",
]

log = structlog.get_logger("mesh.connection")

Callback = Callable[[], Awaitable[None]]

#: Base delay between reconnect attempts; each fleet member waits a random share of it.
RECONNECT_BASE = 0.25
RECONNECT_MAX = 2.0
#: A half-open link (the peer gone without a FIN or RST: a dead NAT entry, a stalled middlebox)
#: is noticed only by unanswered pings; nats-py's default (120 s, 2 outstanding) leaves a client
#: deaf to kills for minutes. Pinging every 2 s notices it after about 6 s, then reconnects.
PING_INTERVAL = 2
MAX_OUTSTANDING_PINGS = 2


def jittered_reconnect(servers: list[Server], _info: dict[str, Any]) -> tuple[Server | None, float]:
    """Pick the least-tried server and a randomised delay, so a fleet does not reconnect in lockstep.

    nats-py has no reconnect jitter of its own; this is its ``reconnect_to_server_handler``.
    """
    fewest = min(s.reconnects for s in servers)
    choice = random.choice([s for s in servers if s.reconnects == fewest])
    ceiling = min(RECONNECT_MAX, RECONNECT_BASE * (2 ** min(choice.reconnects, 8)))
    return choice, random.uniform(0.0, ceiling)


class _NotConnected:
    """Null-object state: every use says clearly that there is no connection yet (or any more)."""

    def __getattr__(self, name: str) -> Any:
        raise ConnectionFailed("(not connected)", f"used {name!r} before connect() or after close()")


_NOT_CONNECTED: Any = _NotConnected()


class _Client(NATS):
    """nats-py's client, telling us the instant it is connected again.

    nats-py marks itself connected at the handshake's PONG, then replays its subscriptions and
    flushes (a server round trip), and only then calls its ``reconnected_cb``. In between, an
    agent's own thread could pass a safe point before a kill written during the outage is
    re-read. The status setter closes that window: it calls ``link_up`` synchronously, before
    any traffic of the new connection.
    """

    link_up: Callable[[], None] | None = None

    async def _send_ping(self, future: asyncio.Future[bool] | None = None) -> None:
        # nats-py writes PING straight to the socket, ahead of the commands still queued for its
        # flusher task: after subscribe(), flush() could return (PONG) before the server had the
        # SUB, and a peer's request then met no responders. Queued commands go first.
        if self.is_connected and self._transport is not None and self._pending:
            self._transport.writelines(self._pending[:])
            self._pending = []
            self._pending_data_size = 0
        await super()._send_ping(future)

    @property
    def _status(self) -> int:
        return int(self.__dict__.get("_mesh_status", NATS.DISCONNECTED))

    @_status.setter
    def _status(self, value: int) -> None:
        state = self.__dict__
        state["_mesh_status"] = value
        # A reconnect goes RECONNECTING, CONNECTING (handshake), CONNECTED (at the handshake's
        # PONG, before the subscriptions are even replayed).
        if value == NATS.RECONNECTING:
            state["_mesh_away"] = True
        elif value == NATS.CONNECTED and state.pop("_mesh_away", False) and self.link_up is not None:
            try:
                self.link_up()
            except Exception as exc:  # a listener's bug must not break nats-py's reconnect
                log.warning("link-up listener failed", error=repr(exc))


class Connection:
    """One NATS connection with its JetStream context and namespace.

    ``await Connection.open(settings)`` or ``async with Connection(settings) as conn``.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        name: str = "agent-mesh",
        on_disconnect: Callback | None = None,
        on_reconnect: Callback | None = None,
        pending_size: int = 2 * 1024 * 1024,
        on_error: Callable[[Exception], Awaitable[None]] | None = None,
    ) -> None:
        self.settings = settings
        ensure_configured()
        self.ns: Namespace = settings.namespace
        self.name = name
        self._on_disconnect = on_disconnect
        self._on_reconnect = on_reconnect
        self._on_error = on_error
        self._pending_size = pending_size
        self.nc: NATS = _NOT_CONNECTED
        self.js: JetStreamContext = _NOT_CONNECTED
        self.connected = asyncio.Event()
        self.errors: list[BaseException] = []
        self._closing = False
        #: Extra (on_disconnect, on_reconnect) pairs: the users of a shared connection.
        self._listeners: list[tuple[Callback | None, Callback | None]] = []
        self._link_up: list[Callable[[], None]] = []
        self._error_listeners: list[Callable[[BaseException], None]] = []
        #: Connected with a mesh identity token: reads go key by key (see mesh/protocol/permissions.py).
        self.scoped = False
        #: The id of that token's credential: its scans use a consumer of that name.
        self.credential_id: str | None = None
        #: What this connection's writers sign audit events with: set with a mesh token.
        self.signer: Signer | None = None

    def add_listener(self, on_disconnect: Callback | None, on_reconnect: Callback | None) -> object:
        """Also call these on disconnect/reconnect (several users of one connection); a token."""
        pair = (on_disconnect, on_reconnect)
        self._listeners.append(pair)
        return pair

    def remove_listener(self, token: object) -> None:
        self._listeners = [p for p in self._listeners if p is not token]
        self._link_up = [f for f in self._link_up if f is not token]
        self._error_listeners = [f for f in self._error_listeners if f is not token]

    def on_error(self, callback: Callable[[BaseException], None]) -> object:
        """Call ``callback`` (sync, in the loop) with every asynchronous error the server sends.

        nats-server reports a refused publish only this way (an ``-ERR``, the request itself just
        goes unanswered), so users of a shared connection listen here. A token for
        :meth:`remove_listener`.
        """
        self._error_listeners.append(callback)
        return callback

    def on_link_up(self, callback: Callable[[], None]) -> object:
        """Call ``callback`` (sync, in the loop) the instant a reconnect succeeds, before its traffic.

        Unlike the reconnect listeners, which nats-py calls after a server round trip. Returns a
        token for :meth:`remove_listener`.
        """
        self._link_up.append(callback)
        return callback

    def _links_up(self) -> None:
        for callback in list(self._link_up):
            callback()

    async def subscribe_all(
        self, subjects: list[str], cb: Callable[[Msg], Awaitable[None]]
    ) -> list[Subscription]:
        """Subscribe ``cb`` to each of ``subjects``."""
        return [await self.nc.subscribe(s, cb=cb) for s in subjects]

    @staticmethod
    async def unsubscribe_all(subs: list[Subscription]) -> None:
        """Unsubscribe each of ``subs``; one that fails (the connection gone, say) is skipped."""
        for sub in subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    @classmethod
    async def open(cls, settings: Settings, **kwargs: Any) -> Connection:
        conn = cls(settings, **kwargs)
        await conn.connect()
        return conn

    async def __aenter__(self) -> Connection:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called: loops that use this connection should end."""
        return self._closing

    @property
    def is_connected(self) -> bool:
        return self.nc is not _NOT_CONNECTED and self.nc.is_connected

    async def connect(self) -> None:
        """Connect, failing within ``settings.connect_timeout`` with a one-line reason."""
        url = self.settings.nats_url
        nc = _Client()
        nc.link_up = self._links_up
        auth_failed = asyncio.Event()
        first_done = False

        async def error_cb(exc: Exception) -> None:
            note_permission_violation(exc)
            for listener in list(self._error_listeners):
                try:
                    listener(exc)
                except Exception as bug:  # a listener's bug must not hide the error from the others
                    log.warning("error listener failed", error=repr(bug))
            if not first_done:
                self.errors.append(exc)
                if is_auth_error(exc):
                    auth_failed.set()
                return
            if self._on_error is not None:
                await self._on_error(exc)
            log.warning("nats error", error=str(exc) or type(exc).__name__, kind=type(exc).__name__)

        async def disconnected_cb() -> None:
            self.connected.clear()
            if first_done and not self._closing:
                log.warning("nats disconnected", url=url)
                if self._on_disconnect is not None:
                    await self._on_disconnect()
                for on_disconnect, _ in list(self._listeners):
                    if on_disconnect is not None:
                        await on_disconnect()

        async def reconnected_cb() -> None:
            self.connected.set()
            log.info("nats reconnected", url=nc.connected_url.netloc if nc.connected_url else url)
            if self._on_reconnect is not None:
                await self._on_reconnect()
            for _, on_reconnect in list(self._listeners):
                if on_reconnect is not None:
                    await on_reconnect()

        options: dict[str, Any] = {
            "servers": self.settings.servers,
            "name": self.name,
            "error_cb": error_cb,
            "disconnected_cb": disconnected_cb,
            "reconnected_cb": reconnected_cb,
            "connect_timeout": max(1, int(self.settings.connect_timeout)),
            "max_reconnect_attempts": -1,
            "reconnect_to_server_handler": jittered_reconnect,
            "pending_size": self._pending_size,
            "ping_interval": PING_INTERVAL,
            "max_outstanding_pings": MAX_OUTSTANDING_PINGS,
        }
        if self.settings.user:
            options["user"] = self.settings.user
            options["password"] = self.settings.password or ""
        if self.settings.token:
            options["token"] = self.settings.token
            # A mesh identity token (nats-identity.conf) may receive replies only under its own
            # inbox prefix, and may not use the multi-get whose keys travel in the body.
            parsed = parse_token(self.settings.token)
            if parsed is not None:
                options["inbox_prefix"] = inbox_prefix(parsed[0])
                self.scoped = True
                self.credential_id = parsed[0]
                self.signer = Signer(parsed[0], parsed[1])
        if self.settings.creds:
            options["user_credentials"] = str(self.settings.creds)

        task = asyncio.ensure_future(nc.connect(**options))
        auth_wait = asyncio.ensure_future(auth_failed.wait())
        try:
            done, _ = await asyncio.wait(
                {task, auth_wait}, timeout=self.settings.connect_timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            auth_wait.cancel()
        if task in done and task.exception() is None:
            first_done = True
            self.nc = nc
            self.js = nc.jetstream()
            self.connected.set()
            return
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        with contextlib.suppress(Exception):
            await nc.close()
        failure = task.exception() if task.done() and not task.cancelled() else None
        if auth_failed.is_set() or (failure is not None and is_auth_error(failure)):
            raise AuthenticationFailed(url, "authorization violation")
        detail = self.errors[-1] if self.errors else failure
        reason = (str(detail) or type(detail).__name__) if detail else "no answer"
        raise ConnectionFailed(
            url, f"{reason}; gave up after {self.settings.connect_timeout:g}s"
        ) from failure

    async def close(self, timeout: float = 5.0) -> None:
        """Drain (deliver what is queued, then close); close outright if draining stalls."""
        nc = self.nc
        if nc is _NOT_CONNECTED:
            return
        self._closing = True
        self.nc = _NOT_CONNECTED
        self.js = _NOT_CONNECTED
        if nc.is_closed:
            return
        try:
            if nc.is_connected:
                await wait_for(nc.drain(), timeout)
        except Exception as exc:  # a drain that fails must still end in a closed connection
            log.debug("drain failed, closing", error=str(exc) or type(exc).__name__)
        finally:
            if not nc.is_closed:
                await _close_outright(nc)


async def _close_outright(nc: NATS) -> None:
    """Close ``nc``; a cancel that nats-py raises on its own (not ours) is not a failure of close."""
    try:
        await nc.close()
    except asyncio.CancelledError:
        # nats-py cancels its reconnect task, which may be awaiting the socket's close waiter;
        # that cancels the shared future, and close() then awaits it and raises CancelledError
        # although nobody cancelled us. By then the client is CLOSED; only a cancel of our own
        # task is passed on.
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        log.debug("close raised nats-py's own cancel; the connection is closed")
    except Exception as exc:
        log.debug("close failed", error=str(exc) or type(exc).__name__)


async def connect(settings: Settings | None = None, **kwargs: Any) -> Connection:
    """Open a :class:`Connection` using ``settings`` (default: from the environment)."""
    return await Connection.open(settings or Settings.from_env(), **kwargs)

"""nats-py's exceptions and the server's asynchronous errors, said as :class:`mesh.errors.MeshError`s.

The one place where a lower exception becomes a public one (callers ``raise ... from``), as httpx's
``map_httpcore_exceptions`` is. nats-server reports a refused publish only on the connection (an
``-ERR``), never on the request, which just times out: the refusals seen lately are remembered so
that such a timeout is said as the refusal it was.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from collections.abc import Callable

import nats.errors
import nats.js.errors

from mesh.errors import (
    AuthenticationFailed,
    ConnectionFailed,
    MeshError,
    MeshTimeout,
    NotProvisioned,
    PermissionDenied,
)

__all__ = [
    "is_auth_error",
    "note_permission_violation",
    "recent_permission_violation",
    "slow_consumer_sid",
    "translate_error",
]


#: Recent "Permissions Violation" errors sent by the server: (monotonic time, subject, text).
#: nats-server reports a denied publish only asynchronously (to ``error_cb``); the request that
#: caused it just times out. Remembering them lets ``translate_error`` say "permission denied"
#: instead of "timed out". Process-wide: a process normally connects as one user.
_VIOLATIONS: deque[tuple[float, str, str]] = deque(maxlen=256)
_VIOLATION_SUBJECT = re.compile(r'permissions violation for (?:publish|subscription) to "?([^"\s]+)', re.I)


def note_permission_violation(exc: BaseException | str) -> bool:
    """Remember a server "Permissions Violation" error; returns whether ``exc`` was one."""
    text = str(exc)
    if "permissions violation" not in text.lower():
        return False
    match = _VIOLATION_SUBJECT.search(text)
    _VIOLATIONS.append((time.monotonic(), (match.group(1) if match else "").lower(), text))
    return True


def recent_permission_violation(subject: str = "", within: float = 30.0) -> str | None:
    """The text of a violation noted in the last ``within`` seconds whose subject contains
    ``subject`` (any violation when ``subject`` is empty), else ``None``.

    Case-insensitive: nats-py lower-cases the server's error text, subject included.
    """
    now = time.monotonic()
    subject = subject.lower()
    for when, denied, text in reversed(_VIOLATIONS):
        if now - when > within:
            break
        if not subject or subject in denied:
            return text
    return None


def translate_error(
    exc: BaseException, operation: str, *, subject: str = "", timeout: float = 0.0
) -> MeshError:
    """Map a nats-py exception to the most specific :class:`MeshError` (callers ``raise ... from``)."""
    if isinstance(exc, MeshError):
        return exc
    text = str(exc)
    if "permissions violation" in text.lower():
        return PermissionDenied(operation, subject, text)
    if isinstance(exc, nats.errors.NoRespondersError):
        # nats-server answers a denied request with an -ERR, not "no responders"; no responders
        # means JetStream is off for the account or (in a cluster) has no leader for the asset yet.
        seen = recent_permission_violation(subject, within=10.0)
        if seen is not None:
            return PermissionDenied(operation, subject, seen)
        return MeshError(
            f"{operation} failed: JetStream did not answer (no responders: JetStream off for this "
            "account, or a cluster electing a leader); try again"
        )
    if isinstance(exc, nats.errors.TimeoutError | asyncio.TimeoutError):
        # A denied publish/request is never answered: the server's -ERR went to error_cb.
        window = max(timeout, 5.0) + (5.0 if subject else 2.0)
        seen = recent_permission_violation(subject, within=window)
        if seen is not None:
            return PermissionDenied(operation, subject, seen)
    if isinstance(exc, nats.js.errors.BucketNotFoundError) or (
        isinstance(exc, nats.js.errors.NotFoundError)
        and (getattr(exc, "err_code", None) == STREAM_NOT_FOUND or "stream not found" in text.lower())
    ):
        return NotProvisioned(subject or operation)
    for types, say in _BY_TYPE:
        if isinstance(exc, types):
            return say(exc, operation, subject, timeout)
    return MeshError(f"{operation} failed: {type(exc).__name__}: {text or 'no detail'}")


#: JetStream's error code for "stream not found" (a bucket is a stream).
STREAM_NOT_FOUND = 10059

_Say = Callable[[BaseException, str, str, float], MeshError]
#: The rest of nats-py's exceptions, by type, in order: the first that matches says it.
_BY_TYPE: tuple[tuple[tuple[type[BaseException], ...], _Say], ...] = (
    ((nats.errors.TimeoutError, asyncio.TimeoutError), lambda e, op, subj, t: MeshTimeout(op, t)),
    (
        (nats.errors.AuthorizationError,),
        lambda e, op, subj, t: AuthenticationFailed(subj or "server", str(e)),
    ),
    (
        (
            nats.errors.NoServersError,
            nats.errors.ConnectionClosedError,
            nats.errors.ConnectionReconnectingError,
            nats.errors.StaleConnectionError,
            OSError,
        ),
        lambda e, op, subj, t: ConnectionFailed(subj or "server", type(e).__name__),
    ),
)


def is_auth_error(exc: BaseException) -> bool:
    text = str(exc).lower()
    return (
        isinstance(exc, nats.errors.AuthorizationError)
        or "authorization violation" in text
        or ("authentication" in text)
    )


def slow_consumer_sid(exc: BaseException) -> int | None:
    """The subscription id whose messages the client dropped, if ``exc`` says a slow consumer."""
    if isinstance(exc, nats.errors.SlowConsumerError):
        return int(exc.sid)
    return None

"""Shared by the nats.conf role tests (test_permissions_*): denial checks and record builders."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from mesh.errors import PermissionDenied
from mesh.protocol.codec import encode
from mesh.protocol.models import InstanceStatus, KillRecord, Status, utcnow
from mesh.protocol.subjects import Namespace
from mesh.transport import natserrors
from mesh.transport.connection import recent_permission_violation, translate_error

from .conftest import SecureServer

NS = Namespace("mesh")
DENY_TIMEOUT = 0.5  # a denied request is never answered; don't wait long for nothing
AUDIT = NS.audit_stream


async def eventually(check: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def through_mesh(aw: Awaitable[Any], operation: str, subject: str = "") -> Any:
    """Run a raw nats-py call the way mesh code does: errors go through ``translate_error``."""
    try:
        return await aw
    except Exception as exc:
        raise translate_error(exc, operation, subject=subject, timeout=DENY_TIMEOUT) from exc


async def assert_denied(
    aw: Awaitable[Any], operation: str, subject: str, *, fresh: bool = True
) -> PermissionDenied:
    """The call fails, and it fails because the server refused ``subject`` to this user."""
    if fresh:
        natserrors._VIOLATIONS.clear()
    with pytest.raises(PermissionDenied) as info:
        await through_mesh(aw, operation, subject)
    assert subject.lower() in info.value.detail.lower()
    assert str(info.value) == f"permission denied: this user may not {operation}"
    return info.value


async def assert_subscribe_denied(conn: Any, subject: str) -> None:
    natserrors._VIOLATIONS.clear()
    received: list[Any] = []

    async def cb(msg: Any) -> None:
        received.append(msg)

    sub = await conn.nc.subscribe(subject, cb=cb)
    await conn.nc.flush()
    await eventually(lambda: recent_permission_violation(subject), what=f"subscribe {subject} denied")
    await sub.unsubscribe()


def kv_subject(bucket: str, key: str) -> str:
    return f"$KV.{bucket}.{key}"


def kill_record(target: str, actor: str) -> bytes:
    return encode(KillRecord(target=target, actor=actor, reason="permission test"))


def status_record(uri: str, instance: str) -> bytes:
    now = utcnow()
    return encode(
        InstanceStatus(
            agent_uri=uri,
            instance=instance,
            status=Status.ACTIVE,
            first_seen=now,
            last_seen=now,
            last_change=now,
        )
    )


async def audit_count(secure: SecureServer) -> int:
    conn = await secure.connect("auditor")
    try:
        info = await conn.js.stream_info(AUDIT)
        return info.state.messages
    finally:
        await conn.close()

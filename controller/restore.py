"""Rebuilding the fleet from the instances KV when a controller starts or takes over."""

from __future__ import annotations

import asyncio

import nats.js.errors
import structlog
from nats.js.kv import KeyValue

from controller.state import Fleet
from mesh.codec import decode
from mesh.errors import MalformedMessage
from mesh.models import InstanceStatus

__all__ = ["restore"]

log = structlog.get_logger("controller.restore")

CHUNK = 256


async def restore(kv: KeyValue, fleet: Fleet) -> int:
    """Load every status record into ``fleet``; returns how many were loaded."""
    try:
        keys = await kv.keys()
    except nats.js.errors.NoKeysError:
        return 0
    loaded = 0
    for i in range(0, len(keys), CHUNK):
        chunk = keys[i : i + CHUNK]
        results = await asyncio.gather(*(kv.get(k) for k in chunk), return_exceptions=True)
        for key, result in zip(chunk, results, strict=True):
            if isinstance(result, nats.js.errors.KeyNotFoundError | nats.js.errors.KeyDeletedError):
                continue
            if isinstance(result, BaseException):
                raise result
            try:
                rec = decode(InstanceStatus, result.value or b"")
            except MalformedMessage as exc:
                log.warning("unreadable status record, skipped", key=key, error=str(exc))
                continue
            fleet.restore(key, rec, result.revision or 0)
            loaded += 1
    return loaded

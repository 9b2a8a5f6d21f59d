"""KV and stream calls that say nats-py's outcomes in mesh terms: a missing key is ``None``, a lost
compare-and-set a :class:`RevisionConflict`, a missing bucket :class:`NotProvisioned`."""

from __future__ import annotations

from typing import Any

import nats.errors
import nats.js.errors

from mesh.errors import NotProvisioned, RevisionConflict
from mesh.protocol.kvwire import KVLatest, is_delete_operation
from mesh.transport.natserrors import translate_error
from mesh.transport.natstypes import JetStreamContext, KeyValue, Msg, PullSubscription, RawStreamMsg

__all__ = [
    "NO_NEWS",
    "create",
    "delete",
    "fetch",
    "get",
    "last_message",
    "next_update",
    "open_bucket",
    "update",
]

#: What :func:`next_update` returns when nothing changed within its timeout.
NO_NEWS = False


async def open_bucket(js: JetStreamContext, name: str) -> KeyValue:
    """The KV bucket ``name``; :class:`NotProvisioned` if it is not there."""
    try:
        return await js.key_value(name)
    except (nats.js.errors.BucketNotFoundError, nats.js.errors.NotFoundError) as exc:
        raise NotProvisioned(f"bucket {name}") from exc
    except Exception as exc:
        raise translate_error(exc, f"open bucket {name}", subject=name) from exc


async def get(kv: KeyValue, key: str, *, operation: str = "read key") -> KVLatest | None:
    """The latest state of ``key``: ``None`` if it never was, a ``None`` value if deleted or purged."""
    try:
        entry = await kv.get(key)
    except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError) as exc:
        # A deleted key still has a revision: the tombstone's. nats-py hides it except here.
        tombstone = getattr(exc, "entry", None)
        revision = int(getattr(tombstone, "revision", None) or 0)
        return KVLatest(key, None, revision) if revision else None
    except Exception as exc:
        raise translate_error(exc, operation, subject=key) from exc
    if entry.value is None or is_delete_operation(entry.operation):
        return KVLatest(key, None, int(entry.revision or 0))
    return KVLatest(key, entry.value, int(entry.revision or 0))


async def create(kv: KeyValue, key: str, value: bytes) -> int:
    """Write ``key`` only if it holds no value; its new revision, or :class:`RevisionConflict`."""
    try:
        return int(await kv.create(key, value))
    except nats.js.errors.KeyWrongLastSequenceError as exc:
        raise RevisionConflict(key, 0) from exc
    except Exception as exc:
        raise translate_error(exc, "create key", subject=key) from exc


async def update(kv: KeyValue, key: str, value: bytes, last: int) -> int:
    """Write ``key`` only if its revision is still ``last``; the new one, or :class:`RevisionConflict`."""
    try:
        return int(await kv.update(key, value, last=last))
    except nats.js.errors.KeyWrongLastSequenceError as exc:
        raise RevisionConflict(key, last) from exc
    except Exception as exc:
        raise translate_error(exc, "update key", subject=key) from exc


async def delete(kv: KeyValue, key: str) -> None:
    """Delete ``key``; one already gone is no error."""
    try:
        await kv.delete(key)
    except nats.js.errors.KeyNotFoundError:
        return
    except Exception as exc:
        raise translate_error(exc, "delete key", subject=key) from exc


async def last_message(
    js: JetStreamContext,
    stream: str,
    subject: str,
    *,
    direct: bool = False,
    operation: str = "read",
    about: str = "",
) -> RawStreamMsg | None:
    """The last message of ``stream`` on ``subject`` (``None`` if there is none).

    Not ``direct``: answered by the stream's leader (a linearizable read); ``direct``: by any replica.
    An error names ``operation`` and ``about`` (default: ``subject``).
    """
    try:
        return await js.get_last_msg(stream, subject, direct=direct)
    except nats.js.errors.NotFoundError:
        return None
    except Exception as exc:
        raise translate_error(exc, operation, subject=about or subject) from exc


async def fetch(psub: PullSubscription, batch: int, timeout: float) -> list[Msg]:
    """Up to ``batch`` messages of a pull consumer; none (not an error) if ``timeout`` passes first."""
    try:
        return await psub.fetch(batch, timeout=timeout)
    except nats.errors.TimeoutError:
        return []


async def next_update(watcher: Any, timeout: float) -> Any:
    """A KV watcher's next entry (``None``: every initial value was delivered), or :data:`NO_NEWS`.

    ``watcher`` is nats-py's ``KeyWatcher``, whose methods it leaves untyped.
    """
    try:
        return await watcher.updates(timeout=timeout)
    except nats.errors.TimeoutError:
        return NO_NEWS

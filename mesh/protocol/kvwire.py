"""JetStream KV on the wire, as pure functions: which messages are deletes, what a direct-get reply says."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

__all__ = [
    "DELETE_MARKER_REASONS",
    "DELETE_OPERATIONS",
    "DirectReply",
    "KVEntry",
    "KVLatest",
    "Reply",
    "is_delete",
    "is_delete_operation",
    "parse_direct_reply",
]

#: ``KV-Operation`` values that end a key's life (a delete keeps history, a purge drops it).
DELETE_OPERATIONS = frozenset({"DEL", "PURGE"})
#: ``Nats-Marker-Reason`` values of the markers nats-server (2.11+) writes itself on buckets with
#: limit markers: ``MaxAge`` (a per-key TTL ran out) and ``Purge`` act as a purge, ``Remove`` as a
#: delete. Such a marker carries no ``KV-Operation`` header, and must never read as a value.
DELETE_MARKER_REASONS = frozenset({"MaxAge", "Purge", "Remove"})


@dataclass(frozen=True, slots=True)
class KVEntry:
    """The latest live value of one key (deleted keys are never returned)."""

    key: str
    value: bytes
    revision: int


@dataclass(frozen=True, slots=True)
class KVLatest:
    """The latest state of one key: its value, or ``None`` when the last write deleted or purged it."""

    key: str
    value: bytes | None
    revision: int


def is_delete_operation(operation: object) -> bool:
    """Whether a KV operation (a header value, or nats-py's ``Entry.operation``) is a delete or purge."""
    return operation in DELETE_OPERATIONS


def is_delete(headers: Mapping[str, str] | None) -> bool:
    """Whether a stored or republished KV message with these headers removes its key."""
    if not headers:
        return False
    return headers.get("KV-Operation") in DELETE_OPERATIONS or headers.get("Nats-Marker-Reason") in (
        DELETE_MARKER_REASONS
    )


class Reply(Enum):
    """What one message of a JetStream direct (multi-)get reply is."""

    ENTRY = "entry"  # one key's latest message (a value or a delete)
    END = "end"  # the batch is complete
    TRUNCATED = "truncated"  # the batch ended with more keys left: read them another way
    EMPTY = "empty"  # no key matched
    UNAVAILABLE = "unavailable"  # the stream has no leader or is not there (503)
    UNKNOWN = "unknown"  # an answer this code does not understand (an older server, say)


@dataclass(frozen=True, slots=True)
class DirectReply:
    kind: Reply
    entry: KVLatest | None = None


def parse_direct_reply(prefix: str, headers: Mapping[str, str] | None, data: bytes) -> DirectReply:
    """One message of a direct-get reply for keys under ``prefix`` (``$KV.<bucket>.``)."""
    headers = headers or {}
    status = headers.get("Status")
    if status and not data:
        if status == "204":
            pending = headers.get("Nats-Num-Pending", "0") or "0"
            more = pending.isdigit() and int(pending) > 0
            return DirectReply(Reply.TRUNCATED if more else Reply.END)
        if status == "404":
            return DirectReply(Reply.EMPTY)
        if status == "503":
            return DirectReply(Reply.UNAVAILABLE)
        return DirectReply(Reply.UNKNOWN)
    subject = headers.get("Nats-Subject", "")
    sequence = headers.get("Nats-Sequence", "")
    if not subject.startswith(prefix) or not sequence.isdigit():
        return DirectReply(Reply.UNKNOWN)
    key = subject[len(prefix) :]
    value = None if is_delete(headers) else data
    return DirectReply(Reply.ENTRY, KVLatest(key, value, int(sequence)))

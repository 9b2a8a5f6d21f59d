"""Kill records in the control bucket: reading them and decoding their republished updates."""

from __future__ import annotations

from dataclasses import dataclass

import nats.js.errors
from nats.aio.msg import Msg
from nats.js.kv import KeyValue

from mesh.codec import decode
from mesh.connection import translate_error
from mesh.errors import MalformedMessage
from mesh.models import KillRecord
from mesh.subjects import Namespace

__all__ = ["ControlUpdate", "parse_control_message", "read_records"]


@dataclass(frozen=True, slots=True)
class ControlUpdate:
    """One state of one control key: a record in force (``record``) or cleared (``None``)."""

    key: str
    revision: int
    record: KillRecord | None

    @property
    def in_force(self) -> bool:
        return self.record is not None


def parse_control_message(ns: Namespace, msg: Msg) -> ControlUpdate:
    """Decode a message republished from the control bucket to ``mesh.ctl.<key>``.

    Raises :class:`MalformedMessage` for anything that is not a republished KV write.
    """
    headers = msg.headers or {}
    try:
        key = ns.control_key_from_subject(msg.subject)
        revision = int(headers["Nats-Sequence"])
    except (KeyError, ValueError) as exc:
        raise MalformedMessage("control", "not a republished control-bucket write", len(msg.data)) from exc
    operation = headers.get("KV-Operation")
    if operation in ("DEL", "PURGE"):
        return ControlUpdate(key, revision, None)
    return ControlUpdate(key, revision, decode(KillRecord, msg.data))


async def read_records(kv: KeyValue, keys: list[str]) -> list[ControlUpdate]:
    """Current state of ``keys`` (missing keys come back with revision 0 and no record)."""
    out: list[ControlUpdate] = []
    for key in keys:
        try:
            entry = await kv.get(key)
        except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError) as exc:
            # A deleted key still has a revision: the tombstone's. nats-py hides it except here.
            rev = getattr(exc, "entry", None)
            out.append(ControlUpdate(key, int(getattr(rev, "revision", 0) or 0), None))
            continue
        except Exception as exc:
            raise translate_error(exc, "read kill records", subject=key) from exc
        if entry.value is None or entry.operation in ("DEL", "PURGE"):
            out.append(ControlUpdate(key, entry.revision or 0, None))
            continue
        try:
            record = decode(KillRecord, entry.value)
        except MalformedMessage:
            # A corrupt record must not make an instance unkillable: treat it as in force.
            record = KillRecord(target=key, reason="unreadable kill record (treated as in force)")
        out.append(ControlUpdate(key, entry.revision or 0, record))
    return out

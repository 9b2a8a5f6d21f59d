"""One state of one control key, as pushes and reads report it, and a stored kill record decoded."""

from __future__ import annotations

from dataclasses import dataclass

from mesh.errors import MalformedMessage
from mesh.protocol.codec import decode
from mesh.protocol.models import KillRecord

__all__ = ["ControlUpdate", "decode_record"]


@dataclass(frozen=True, slots=True)
class ControlUpdate:
    """One state of one control key: a record in force (``record``) or cleared (``None``)."""

    key: str
    revision: int
    record: KillRecord | None

    @property
    def in_force(self) -> bool:
        return self.record is not None


def decode_record(key: str, value: bytes) -> KillRecord:
    """A stored kill record; one that does not decode counts as in force (never as no kill)."""
    try:
        return decode(KillRecord, value)
    except MalformedMessage:
        # A corrupt record must not make an instance unkillable: treat it as in force.
        return KillRecord(target=key, reason="unreadable kill record (treated as in force)")

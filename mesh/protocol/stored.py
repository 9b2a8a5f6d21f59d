"""Reading what the buckets store, leniently: bad statuses are skipped, bare checkpoints kept."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping

from mesh.errors import MalformedMessage
from mesh.protocol.codec import decode
from mesh.protocol.kvwire import KVEntry
from mesh.protocol.models import Checkpoint, InstanceStatus

__all__ = ["decode_checkpoint", "decode_checkpoints", "decode_statuses"]


def decode_statuses(entries: Mapping[str, KVEntry]) -> list[InstanceStatus]:
    """The instance statuses among ``entries`` that decode, by agent and instance."""
    out: list[InstanceStatus] = []
    for entry in entries.values():
        with contextlib.suppress(MalformedMessage):
            out.append(decode(InstanceStatus, entry.value))
    return sorted(out, key=lambda s: (s.agent_uri, s.instance))


def decode_checkpoint(entry: KVEntry, agent_uri: str, instance: str) -> Checkpoint | None:
    """A stored checkpoint; plain JSON (written by hand or by an older SDK) becomes its state."""
    try:
        return decode(Checkpoint, entry.value)
    except MalformedMessage:
        try:
            state = json.loads(entry.value)
        except ValueError:
            return None
        return Checkpoint(agent_uri=agent_uri, instance=instance, seq=entry.revision, state=state)


def decode_checkpoints(entries: Mapping[str, KVEntry], agent_uri: str) -> dict[str, Checkpoint]:
    """One agent's stored checkpoints, by instance (the last segment of each key)."""
    saved: dict[str, Checkpoint] = {}
    for key, entry in entries.items():
        instance = key.rsplit(".", 1)[-1]
        checkpoint = decode_checkpoint(entry, agent_uri, instance)
        if checkpoint is not None:
            saved[instance] = checkpoint
    return saved

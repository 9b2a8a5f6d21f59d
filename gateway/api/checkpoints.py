"""HTTP agents' checkpoints, in the checkpoints bucket under the instance key the SDK uses."""

from __future__ import annotations

from typing import Any

from gateway.errors import Invalid, Unavailable
from mesh.errors import InvalidCheckpoint, MalformedMessage, MeshError
from mesh.protocol.codec import decode, encode, encode_state
from mesh.protocol.models import Checkpoint
from mesh.transport.connection import Connection
from mesh.transport.kvscan import put_key, read_latest

__all__ = ["HINT", "read_checkpoint", "write_checkpoint"]

#: Under nats.conf the gateway's own user may not touch checkpoints or publish lifecycle events.
HINT = "(under nats.conf, give the API the agent role's login: [api.nats.agent], docs/http-api.md)"


async def read_checkpoint(conn: Connection, key: str) -> tuple[Checkpoint | None, int | None]:
    """The stored checkpoint and its revision (None, None when there is none)."""
    try:
        latest = await read_latest(conn, conn.ns.checkpoints_bucket, [key], timeout=2.0)
    except MeshError as exc:
        raise Unavailable(f"cannot read the checkpoint right now: {exc} {HINT}") from None
    entry = (latest or {}).get(key)
    if entry is None or entry.value is None:
        return None, None
    try:
        return decode(Checkpoint, entry.value), entry.revision
    except MalformedMessage:
        return None, entry.revision


async def write_checkpoint(
    conn: Connection, key: str, agent_uri: str, instance: str, seq: int, state: Any, usage: dict[str, float]
) -> tuple[Checkpoint, int]:
    """Store ``state`` as checkpoint ``seq``; refused whole (422) if it is not JSON within the limit."""
    try:
        encode_state(state)
    except InvalidCheckpoint as exc:
        raise Invalid(str(exc), field="state") from None
    ckpt = Checkpoint(agent_uri=agent_uri, instance=instance, seq=seq, state=state, usage=usage)
    try:
        revision = await put_key(conn, conn.ns.checkpoints_bucket, key, encode(ckpt), timeout=2.0)
    except MeshError as exc:
        raise Unavailable(f"cannot store the checkpoint right now: {exc} {HINT}") from None
    return ckpt, revision

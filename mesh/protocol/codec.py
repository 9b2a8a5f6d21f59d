"""Encoding and decoding of wire models: bytes in, a model or one clear ``MalformedMessage`` out."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from mesh.errors import InvalidCheckpoint, MalformedMessage, PayloadTooLarge

__all__ = ["DEFAULT_MAX_PAYLOAD", "MAX_CHECKPOINT_BYTES", "decode", "encode", "encode_state"]

M = TypeVar("M", bound=BaseModel)

#: nats-server's default max_payload (1 MiB).
DEFAULT_MAX_PAYLOAD = 1024 * 1024
#: Checkpoint state must fit in one KV value with room for the envelope.
MAX_CHECKPOINT_BYTES = 512 * 1024


def encode(model: BaseModel) -> bytes:
    return model.model_dump_json(exclude_none=False).encode()


def decode(model: type[M], data: bytes, *, max_size: int = DEFAULT_MAX_PAYLOAD) -> M:
    """Decode ``data`` as ``model``; any failure is a :class:`MalformedMessage`."""
    kind = model.__name__
    size = len(data)
    if size > max_size:
        raise PayloadTooLarge(kind, size, max_size)
    if not data:
        raise MalformedMessage(kind, "empty payload", 0)
    try:
        return model.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "message"
        raise MalformedMessage(kind, f"{where}: {first.get('msg', 'invalid')}", size) from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedMessage(kind, str(exc).splitlines()[0], size) from exc


def encode_state(state: Any, *, max_size: int = MAX_CHECKPOINT_BYTES) -> bytes:
    """Serialise checkpoint state as JSON, refusing what would not round-trip or fit."""
    try:
        raw = json.dumps(state, allow_nan=False, separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        raise InvalidCheckpoint(f"state is not JSON-serialisable: {exc}") from exc
    if len(raw) > max_size:
        raise InvalidCheckpoint(
            f"state is {len(raw)} bytes, the limit is {max_size}", size=len(raw), max_size=max_size
        )
    return raw

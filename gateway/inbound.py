"""Reading what agents send: the virtual key from the request's headers, bodies under a size limit."""

from __future__ import annotations

from starlette.requests import Request

from gateway.errors import BodyTooLarge

__all__ = ["key_of", "read_body"]


def key_of(request: Request) -> str | None:
    """The key as each client sends its API key: ``Authorization: Bearer`` (OpenAI, Anthropic 2.x,
    MCP) or ``x-api-key`` (older Anthropic clients)."""
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return request.headers.get("x-api-key")


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused past ``limit`` bytes without reading the rest."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)

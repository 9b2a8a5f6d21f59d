"""A loopback upstream that speaks the OpenAI and Anthropic HTTP APIs (SSE streams included).

The model name steers it: ``hang`` never answers; ``paced`` streams two chunks and then waits
for ``release`` (so a test can kill mid-stream). Every request is recorded with its arrival time,
the credential it carried and its body.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

OPENAI_USAGE = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
ANTHROPIC_USAGE = {"input_tokens": 12, "output_tokens": 5}
STREAM_OPENAI_USAGE = {"prompt_tokens": 20, "completion_tokens": 3, "total_tokens": 23}
STREAM_ANTHROPIC_IN, STREAM_ANTHROPIC_OUT = 25, 4


@dataclass
class Seen:
    at: float
    path: str
    auth: str
    body: Any


@dataclass
class FakeUpstream:
    seen: list[Seen] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    streams_closed: int = 0
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def after(self, t: float) -> list[Seen]:
        return [s for s in self.seen if s.at > t]

    async def _record(self, request: Request) -> Any:
        raw = await request.body()
        body = json.loads(raw) if raw else None
        auth = request.headers.get("authorization") or request.headers.get("x-api-key") or ""
        self.seen.append(Seen(time.monotonic(), request.url.path, auth, body))
        return body

    async def _hang(self) -> None:
        await asyncio.Event().wait()

    async def chat(self, request: Request) -> Response:
        body = await self._record(request)
        model = body.get("model", "")
        if model == "hang":
            await self._hang()
        if body.get("stream"):
            return StreamingResponse(self._openai_stream(model, body), media_type="text/event-stream")
        return JSONResponse(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 0,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "hello"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": OPENAI_USAGE,
            }
        )

    async def _openai_stream(self, model: str, body: dict[str, Any]) -> AsyncIterator[bytes]:
        try:
            for i in range(3):
                if model == "paced" and i == 2:
                    await self.release.wait()
                if model == "breaks" and i == 1:
                    raise ConnectionResetError("the upstream fell over mid-stream")
                chunk = {
                    "id": "c1",
                    "object": "chat.completion.chunk",
                    "created": 0,
                    "model": model,
                    "choices": [{"index": 0, "delta": {"content": f"t{i} "}, "finish_reason": None}],
                }
                yield b"data: " + json.dumps(chunk).encode() + b"\n\n"
            if (body.get("stream_options") or {}).get("include_usage"):
                last = {
                    "id": "c1",
                    "object": "chat.completion.chunk",
                    "created": 0,
                    "model": model,
                    "choices": [],
                    "usage": STREAM_OPENAI_USAGE,
                }
                yield b"data: " + json.dumps(last).encode() + b"\n\n"
            yield b"data: [DONE]\n\n"
        finally:
            self.streams_closed += 1

    async def messages(self, request: Request) -> Response:
        body = await self._record(request)
        model = body.get("model", "")
        if model == "hang":
            await self._hang()
        if body.get("stream"):
            return StreamingResponse(self._anthropic_stream(model), media_type="text/event-stream")
        return JSONResponse(
            {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{"type": "text", "text": "hello"}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": ANTHROPIC_USAGE,
            }
        )

    async def _anthropic_stream(self, model: str) -> AsyncIterator[bytes]:
        def ev(name: str, data: dict[str, Any]) -> bytes:
            return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()

        try:
            start = {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": STREAM_ANTHROPIC_IN, "output_tokens": 1},
            }
            yield ev("message_start", {"type": "message_start", "message": start})
            yield ev(
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            )
            for i in range(2):
                yield ev(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "text_delta", "text": f"t{i} "},
                    },
                )
            if model == "paced":
                await self.release.wait()
            yield ev("content_block_stop", {"type": "content_block_stop", "index": 0})
            yield ev(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": STREAM_ANTHROPIC_OUT},
                },
            )
            yield ev("message_stop", {"type": "message_stop"})
        finally:
            self.streams_closed += 1

    async def embeddings(self, request: Request) -> Response:
        body = await self._record(request)
        return JSONResponse(
            {
                "object": "list",
                "data": [{"object": "embedding", "index": 0, "embedding": [0.25, 0.5]}],
                "model": body.get("model", ""),
                "usage": {"prompt_tokens": 4, "total_tokens": 4},
            }
        )

    async def responses(self, request: Request) -> Response:
        body = await self._record(request)
        if body.get("stream"):
            return StreamingResponse(
                self._responses_stream(body.get("model", "")), media_type="text/event-stream"
            )
        return JSONResponse(
            {
                "id": "resp_1",
                "object": "response",
                "created_at": 0,
                "status": "completed",
                "model": body.get("model", ""),
                "output": [
                    {
                        "type": "message",
                        "id": "m1",
                        "status": "completed",
                        "role": "assistant",
                        "content": [{"type": "output_text", "text": "hello", "annotations": []}],
                    }
                ],
                "parallel_tool_calls": True,
                "tool_choice": "auto",
                "tools": [],
                "usage": {
                    "input_tokens": 9,
                    "output_tokens": 3,
                    "total_tokens": 12,
                    "input_tokens_details": {"cached_tokens": 0},
                    "output_tokens_details": {"reasoning_tokens": 0},
                },
            }
        )

    async def _responses_stream(self, model: str) -> AsyncIterator[bytes]:
        def ev(data: dict[str, Any]) -> bytes:
            return f"event: {data['type']}\ndata: {json.dumps(data)}\n\n".encode()

        base = {"id": "resp_1", "object": "response", "created_at": 0, "model": model, "output": []}
        try:
            yield ev(
                {
                    "type": "response.created",
                    "sequence_number": 0,
                    "response": {**base, "status": "in_progress"},
                }
            )
            for i in range(2):
                if model == "paced" and i == 1:
                    await self.release.wait()
                yield ev(
                    {
                        "type": "response.output_text.delta",
                        "sequence_number": i + 1,
                        "item_id": "m1",
                        "output_index": 0,
                        "content_index": 0,
                        "delta": f"t{i} ",
                        "logprobs": [],
                    }
                )
            usage = {"input_tokens": 30, "output_tokens": 2, "total_tokens": 32}
            done = {**base, "status": "completed", "usage": usage}
            yield ev({"type": "response.completed", "sequence_number": 3, "response": done})
        finally:
            self.streams_closed += 1

    async def models(self, request: Request) -> Response:
        await self._record(request)
        return JSONResponse(
            {
                "object": "list",
                "data": [{"id": "gpt-4o-mini", "object": "model", "created": 0, "owned_by": "t"}],
            }
        )

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
                Route("/v1/messages", self.messages, methods=["POST"]),
                Route("/v1/embeddings", self.embeddings, methods=["POST"]),
                Route("/v1/responses", self.responses, methods=["POST"]),
                Route("/v1/models", self.models, methods=["GET"]),
            ]
        )


@contextlib.asynccontextmanager
async def serving(app: Any, what: str, **config: Any) -> AsyncIterator[int]:
    """``app`` served by uvicorn on a loopback port (yielded) for the block; ``config``: e.g. TLS files."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off", **config)
    )
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, f"{what} did not start"
        assert not task.done(), f"{what} failed to start"
        await asyncio.sleep(0.01)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(task, 5)


@contextlib.asynccontextmanager
async def running_upstream() -> AsyncIterator[FakeUpstream]:
    """A :class:`FakeUpstream` on loopback; held responses are released before it stops."""
    up = FakeUpstream()
    async with serving(up.app(), "the fake upstream") as port:
        up.port = port
        try:
            yield up
        finally:
            up.release.set()


async def start_resetter() -> tuple[int, asyncio.Server]:
    """A TCP server that reads the request and drops the connection: an upstream that resets."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)
        writer.transport.abort()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server.sockets[0].getsockname()[1], server

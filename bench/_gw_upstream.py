"""A minimal OpenAI-shaped upstream for the gateway bench: raw asyncio, so its own cost stays small.

``python -m bench._gw_upstream`` prints its port. A body with ``"stream": true`` gets SSE (three
chunks, usage, [DONE]); model ``endless`` streams a chunk every 2 ms until the client hangs up.
"""

from __future__ import annotations

import asyncio
import json
import sys

CHAT = json.dumps(
    {
        "id": "c1",
        "object": "chat.completion",
        "created": 0,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
    }
).encode()
CHUNK = (
    b'data: {"id":"c1","object":"chat.completion.chunk","created":0,"model":"gpt-4o-mini",'
    b'"choices":[{"index":0,"delta":{"content":"t"},"finish_reason":null}]}\n\n'
)
USAGE = (
    b'data: {"id":"c1","object":"chat.completion.chunk","created":0,"model":"gpt-4o-mini","choices":[],'
    b'"usage":{"prompt_tokens":20,"completion_tokens":3,"total_tokens":23}}\n\n'
)


SSE_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length) if length else b""
            if b'"stream": true' in body or b'"stream":true' in body:
                writer.write(SSE_HEAD)
                if b"endless" in body:
                    while True:
                        writer.write(_chunk(CHUNK))
                        await writer.drain()
                        await asyncio.sleep(0.002)
                for _ in range(3):
                    writer.write(_chunk(CHUNK))
                writer.write(_chunk(USAGE) + _chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
            else:
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    + f"content-length: {len(CHAT)}\r\n\r\n".encode()
                    + CHAT
                )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main() -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)

"""The official anthropic client through the gateway: messages, streamed usage, refusal, a cut stream."""

from __future__ import annotations

import time

import anthropic
import pytest

from mesh.client.operator import AsyncMesh
from tests.gateway.conftest import AGENT, UPSTREAM_SECRET, HeartbeatWatch, Running, eventually
from tests.gateway.upstream import ANTHROPIC_USAGE, STREAM_ANTHROPIC_IN, STREAM_ANTHROPIC_OUT, FakeUpstream

pytestmark = pytest.mark.timeout(60)

MSG = [{"role": "user", "content": "hi"}]


def client(gateway: Running, key: str) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=gateway.url, api_key=key, max_retries=0)


async def test_messages_metered_streamed_and_cut(
    gateway: Running, upstream: FakeUpstream, mesh: AsyncMesh, heartbeats: HeartbeatWatch
) -> None:
    ai = client(gateway, await gateway.key())
    out = await ai.messages.create(model="claude-sonnet-4-20250514", max_tokens=10, messages=MSG)  # type: ignore[arg-type]
    assert out.content[0].text == "hello"  # type: ignore[union-attr]
    async with ai.messages.stream(model="claude-sonnet-4-20250514", max_tokens=10, messages=MSG) as s:  # type: ignore[arg-type]
        text = "".join([t async for t in s.text_stream])
    assert text == "t0 t1 "
    assert {x.auth for x in upstream.seen} <= {UPSTREAM_SECRET, f"Bearer {UPSTREAM_SECRET}"}
    usage = await eventually(lambda: (u := heartbeats.usage()).get("llm_requests") == 2 and u)
    assert usage["input_tokens"] == ANTHROPIC_USAGE["input_tokens"] + STREAM_ANTHROPIC_IN
    assert usage["output_tokens"] == ANTHROPIC_USAGE["output_tokens"] + STREAM_ANTHROPIC_OUT
    want = (usage["input_tokens"] * 3.0 + usage["output_tokens"] * 15.0) / 1e6  # claude-sonnet-4 prices
    assert usage["cost_usd"] == pytest.approx(want)

    # A stream in flight when the kill lands ends with an error event the client raises.
    async def read_and_kill() -> None:
        async with ai.messages.stream(model="paced", max_tokens=10, messages=MSG) as s:  # type: ignore[arg-type]
            async for event in s:
                if event.type == "content_block_delta":
                    await mesh.kill(AGENT, reason="budget blown", wait=0)

    with pytest.raises(anthropic.APIStatusError) as info:
        await read_and_kill()
    assert "budget blown" in str(info.value)
    cut_at = time.monotonic()
    with pytest.raises(anthropic.PermissionDeniedError) as denied:
        await ai.messages.create(model="claude-sonnet-4-20250514", max_tokens=10, messages=MSG)  # type: ignore[arg-type]
    assert "budget blown" in str(denied.value) and "tester" in str(denied.value)
    assert upstream.after(cut_at) == []


async def test_anthropic_errors_are_in_anthropic_format(gateway: Running, upstream: FakeUpstream) -> None:
    ai = client(gateway, "mk-not-a-real-key")
    with pytest.raises(anthropic.AuthenticationError) as info:
        await ai.messages.create(model="claude-sonnet-4-20250514", max_tokens=10, messages=MSG)  # type: ignore[arg-type]
    body = info.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"]["type"] == "authentication_error"
    assert upstream.seen == []

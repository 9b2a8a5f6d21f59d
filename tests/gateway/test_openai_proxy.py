"""The official openai client through the gateway: forwarded, metered, refused once killed, streams cut."""

from __future__ import annotations

import time

import openai
import pytest

from mesh.client.operator import AsyncMesh
from tests.gateway.conftest import AGENT, UPSTREAM_SECRET, HeartbeatWatch, Running, eventually
from tests.gateway.upstream import OPENAI_USAGE, STREAM_OPENAI_USAGE, FakeUpstream

pytestmark = pytest.mark.timeout(60)

PRICE_IN, PRICE_OUT = 0.15, 0.60  # gpt-4o-mini in gateway/prices.toml, USD per 1M tokens


def client(gateway: Running, key: str, **kw: object) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0, **kw)  # type: ignore[arg-type]


async def test_chat_forwarded_metered_then_refused_naming_the_record(
    gateway: Running, upstream: FakeUpstream, mesh: AsyncMesh, heartbeats: HeartbeatWatch
) -> None:
    key = await gateway.key()
    ai = client(gateway, key)
    for _ in range(2):
        out = await ai.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
        assert out.choices[0].message.content == "hello"
    # The upstream saw the real credential, never the virtual key.
    assert {s.auth for s in upstream.seen} == {f"Bearer {UPSTREAM_SECRET}"}
    want_cost = (
        2 * (OPENAI_USAGE["prompt_tokens"] * PRICE_IN + OPENAI_USAGE["completion_tokens"] * PRICE_OUT) / 1e6
    )
    usage = await eventually(lambda: (u := heartbeats.usage()).get("llm_requests") == 2 and u)
    assert usage["input_tokens"] == 2 * OPENAI_USAGE["prompt_tokens"]
    assert usage["output_tokens"] == 2 * OPENAI_USAGE["completion_tokens"]
    assert usage["cost_usd"] == pytest.approx(want_cost)

    await mesh.kill(AGENT, reason="sending spam", wait=0)

    # The kill lands asynchronously: poll until refused, then nothing more may reach the upstream.
    async def refused() -> openai.PermissionDeniedError | None:
        try:
            await ai.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
        except openai.PermissionDeniedError as exc:
            return exc
        return None

    exc = await eventually(refused)
    refused_at = time.monotonic()
    assert exc.status_code == 403
    assert "sending spam" in str(exc) and "tester" in str(exc) and AGENT in str(exc)
    body = exc.body
    assert isinstance(body, dict) and body["mesh"]["target"] == AGENT and body["mesh"]["actor"] == "tester"
    for _ in range(5):
        with pytest.raises(openai.PermissionDeniedError):
            await ai.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    assert upstream.after(refused_at) == []

    await mesh.resume(AGENT, reason="fixed")
    await eventually(refused_is_over(ai))
    # Usage counters equal what the upstream reported, refusals excluded.
    final = await eventually(lambda: (u := heartbeats.usage()).get("llm_requests", 0) >= 3 and u)
    calls = len([s for s in upstream.seen if s.path == "/v1/chat/completions"])
    assert final["llm_requests"] == calls
    assert final["input_tokens"] == calls * OPENAI_USAGE["prompt_tokens"]


def refused_is_over(ai: openai.AsyncOpenAI):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        try:
            await ai.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
        except openai.PermissionDeniedError:
            return False
        return True

    return check


async def test_stream_passes_chunk_by_chunk_and_is_cut_by_a_kill(
    gateway: Running, upstream: FakeUpstream, mesh: AsyncMesh, heartbeats: HeartbeatWatch
) -> None:
    key = await gateway.key()
    ai = client(gateway, key)
    # A whole stream first: its usage (asked for by the gateway) is metered.
    stream = await ai.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "t0 t1 t2 "
    usage = await eventually(lambda: (u := heartbeats.usage()).get("llm_requests") == 1 and u)
    assert usage["input_tokens"] == STREAM_OPENAI_USAGE["prompt_tokens"]
    assert usage["output_tokens"] == STREAM_OPENAI_USAGE["completion_tokens"]

    # A paced stream: two chunks arrive before the upstream finishes (proof of no buffering), then a kill.
    stream = await ai.chat.completions.create(
        model="paced", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    it = stream.__aiter__()
    first = await it.__anext__()
    second = await it.__anext__()
    assert first.choices[0].delta.content == "t0 " and second.choices[0].delta.content == "t1 "
    closed_before = upstream.streams_closed
    await mesh.kill(AGENT, reason="runaway loop", wait=0)
    with pytest.raises(openai.APIError) as info:
        async for _ in it:
            pass
    assert "runaway loop" in str(info.value)
    cut_at = time.monotonic()
    # The gateway hung up on the upstream too.
    await eventually(lambda: upstream.streams_closed > closed_before)
    with pytest.raises(openai.PermissionDeniedError):
        await ai.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    assert upstream.after(cut_at) == []
    health = (await gateway.health()).json()
    assert health["streams_open"] == 0 and health["refused"] >= 2


async def test_embeddings_responses_and_models(
    gateway: Running, upstream: FakeUpstream, heartbeats: HeartbeatWatch
) -> None:
    ai = client(gateway, await gateway.key())
    emb = await ai.embeddings.create(model="text-embedding-3-small", input="hello")
    assert emb.data[0].embedding == [0.25, 0.5]
    resp = await ai.responses.create(model="gpt-4o-mini", input="hi")
    assert resp.output_text == "hello"
    models = await ai.models.list()
    assert [m.id async for m in models] == ["gpt-4o-mini"]
    usage = await eventually(lambda: (u := heartbeats.usage()).get("llm_requests") == 2 and u)
    assert usage["input_tokens"] == 4 + 9 and usage["output_tokens"] == 3


async def test_responses_stream_metered_and_cut(
    gateway: Running, upstream: FakeUpstream, mesh: AsyncMesh, heartbeats: HeartbeatWatch
) -> None:
    ai = client(gateway, await gateway.key())
    stream = await ai.responses.create(model="gpt-4o-mini", input="hi", stream=True)
    deltas = [e.delta async for e in stream if e.type == "response.output_text.delta"]
    assert deltas == ["t0 ", "t1 "]
    usage = await eventually(lambda: (u := heartbeats.usage()).get("llm_requests") == 1 and u)
    assert usage["input_tokens"] == 30 and usage["output_tokens"] == 2
    stream = await ai.responses.create(model="paced", input="hi", stream=True)
    events = stream.__aiter__()
    assert (await events.__anext__()).type == "response.created"
    assert (await events.__anext__()).type == "response.output_text.delta"
    await mesh.kill(AGENT, reason="no more responses", wait=0)

    async def drain() -> None:
        async for _ in events:
            pass

    with pytest.raises(openai.APIError, match="no more responses"):
        await drain()
    cut_at = time.monotonic()
    with pytest.raises(openai.PermissionDeniedError):
        await ai.responses.create(model="gpt-4o-mini", input="hi")
    assert upstream.after(cut_at) == []

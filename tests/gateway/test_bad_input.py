"""Hostile and broken input: each gets a clear error in the protocol's format; the gateway keeps serving."""

from __future__ import annotations

from collections.abc import Awaitable

import anthropic
import httpx
import openai
import pytest

from gateway.keystore import list_keys, revoke_key
from mesh.client.operator import AsyncMesh
from tests.gateway.conftest import UPSTREAM_SECRET, Running, eventually
from tests.gateway.upstream import FakeUpstream

pytestmark = pytest.mark.timeout(60)

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


async def post(
    gateway: Running, key: str | None, body: bytes, path: str = "/v1/chat/completions"
) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if key is not None:
        headers["authorization"] = f"Bearer {key}"
    async with httpx.AsyncClient(timeout=30) as c:
        return await c.post(gateway.url + path, content=body, headers=headers)


def no_secret(resp: httpx.Response, *secrets: str) -> None:
    for s in (UPSTREAM_SECRET, *secrets):
        assert s not in resp.text


async def test_keys_unknown_missing_and_revoked(gateway: Running, upstream: FakeUpstream) -> None:
    for key in (None, "sk-someone-elses-openai-key", "mk-" + "x" * 43):
        resp = await post(gateway, key, b"{}")
        assert resp.status_code == 401
        assert resp.json()["error"]["code"] == "invalid_api_key"
        no_secret(resp)
    key = await gateway.key()
    ai = openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0)
    await ai.chat.completions.create(**CHAT)  # type: ignore[call-overload]
    (record,) = await list_keys(gateway.conn)
    assert record.revoked_at is None and key not in record.model_dump_json()
    await revoke_key(gateway.conn, record.id, actor="tester")

    async def rejected() -> openai.AuthenticationError | None:
        try:
            await ai.chat.completions.create(**CHAT)  # type: ignore[call-overload]
        except openai.AuthenticationError as exc:
            return exc
        return None

    exc = await eventually(rejected)
    assert "revoked" in str(exc) and record.id in str(exc) and key not in str(exc)
    assert len(upstream.seen) == 1


async def test_malformed_and_oversized_bodies(gateway: Running, upstream: FakeUpstream) -> None:
    key = await gateway.key()
    for body in (b"{not json", b"[1, 2]", b"\xff\xfe"):
        resp = await post(gateway, key, body)
        assert resp.status_code == 400, body
        assert resp.json()["error"]["type"] == "invalid_request_error"
    big = b'{"x": "' + b"a" * (gateway.gw.config.max_body_bytes + 10) + b'"}'
    resp = await post(gateway, key, big)
    assert resp.status_code == 413 and resp.json()["error"]["code"] == "request_too_large"
    resp = await post(gateway, key, big, path="/v1/messages")
    assert resp.status_code == 413 and resp.json()["type"] == "error"
    assert upstream.seen == []
    health = (await gateway.health()).json()
    assert health["ok"] and health["rejected"]["invalid_request_error"] == 3


async def test_upstream_that_hangs_or_resets(gateway: Running, upstream: FakeUpstream) -> None:
    key = await gateway.key()
    ai = openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0, timeout=30)
    with pytest.raises(openai.APIStatusError) as info:
        await ai.chat.completions.create(model="hang", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 504 and "openai" in str(info.value)
    broken = await gateway.key(upstream="broken")
    bad = openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key=broken, max_retries=0, timeout=30)
    with pytest.raises(openai.APIStatusError) as info:
        await bad.chat.completions.create(**CHAT)  # type: ignore[call-overload]
    assert info.value.status_code == 502 and "broken" in str(info.value)
    # Still serving.
    out = await ai.chat.completions.create(**CHAT)  # type: ignore[call-overload]
    assert out.choices[0].message.content == "hello"
    assert (await gateway.health()).json()["upstream_errors"] == 2


async def test_instance_narrowing(gateway: Running, upstream: FakeUpstream, mesh: AsyncMesh) -> None:
    pinned = await gateway.key(instance="w1")
    resp = await post(gateway, pinned, b"{}")
    assert resp.status_code != 403
    async with httpx.AsyncClient() as c:
        h = {"authorization": f"Bearer {pinned}", "x-mesh-instance": "w2"}
        resp = await c.post(gateway.url + "/v1/chat/completions", json=CHAT, headers=h)
        assert resp.status_code == 403 and resp.json()["error"]["code"] == "instance_not_allowed"
        h = {"authorization": f"Bearer {pinned}", "x-mesh-instance": "bad.id"}
        resp = await c.post(gateway.url + "/v1/chat/completions", json=CHAT, headers=h)
        assert resp.status_code == 403
    free = await gateway.key()
    await mesh.kill("agent://acme/prod/mailer", instance="w1", reason="one bad worker", wait=0)

    async def status(instance: str) -> int:
        async with httpx.AsyncClient() as c:
            h = {"authorization": f"Bearer {free}", "x-mesh-instance": instance}
            return (await c.post(gateway.url + "/v1/chat/completions", json=CHAT, headers=h)).status_code

    await eventually(lambda: _is(status("w1"), 403))
    assert await status("w2") == 200
    assert await status("w1") == 403


async def _is(value: Awaitable[int], want: int) -> bool:
    return await value == want


async def test_stream_that_breaks_off_ends_with_an_error_event(
    gateway: Running, upstream: FakeUpstream
) -> None:
    ai = openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key=await gateway.key(), max_retries=0)
    stream = await ai.chat.completions.create(
        model="breaks", messages=[{"role": "user", "content": "x"}], stream=True
    )
    got: list[str] = []

    async def read_all() -> None:
        async for c in stream:
            got.extend(ch.delta.content or "" for ch in c.choices)

    with pytest.raises(openai.APIError) as info:
        await read_all()
    assert got == ["t0 "] and "broke off" in str(info.value)
    assert (await gateway.health()).json()["upstream_errors"] == 1


async def test_anthropic_upstream_that_hangs(gateway: Running) -> None:
    ai = anthropic.AsyncAnthropic(
        base_url=gateway.url, api_key=await gateway.key(), max_retries=0, timeout=30
    )
    with pytest.raises(anthropic.APIStatusError) as info:
        await ai.messages.create(model="hang", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 504
    body = info.value.body
    assert isinstance(body, dict) and body["type"] == "error" and UPSTREAM_SECRET not in str(body)


async def test_instance_ids_per_agent_are_capped(gateway: Running, upstream: FakeUpstream) -> None:
    gateway.gw.meter.max_instances = 2
    key = await gateway.key()
    async with httpx.AsyncClient(timeout=30) as c:
        codes = []
        for instance in ("a1", "a2", "a3", "a1"):
            h = {"authorization": f"Bearer {key}", "x-mesh-instance": instance}
            resp = await c.post(gateway.url + "/v1/chat/completions", json=CHAT, headers=h)
            codes.append(resp.status_code)
            if resp.status_code == 403:
                assert resp.json()["error"]["code"] == "instance_not_allowed"
    assert codes == [200, 200, 403, 200]
    assert len(upstream.seen) == 3

"""``mesh up --gateway``: one process runs NATS, the controller and the gateway; a cost policy then
stops an agent that has no SDK at all, from the usage the gateway metered."""

from __future__ import annotations

import asyncio
import re
import signal
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.cli.test_cli_commands import env_for
from tests.gateway.conftest import AGENT, UPSTREAM_SECRET, eventually
from tests.gateway.upstream import FakeUpstream
from tests.operator_support import MESH
from tests.ports import free_port

pytestmark = pytest.mark.timeout(120)

CHAT: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}



async def _run(env: dict[str, str], *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        MESH, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def _line(stream: asyncio.StreamReader, pattern: str) -> re.Match[str]:
    while True:
        line = (await asyncio.wait_for(stream.readline(), 30)).decode()
        assert line, f"{pattern!r} never printed"
        if match := re.search(pattern, line):
            return match


async def test_cost_policy_stops_an_sdk_less_agent(upstream: FakeUpstream, tmp_path: Path) -> None:
    from mesh.runtime.settings import Settings

    port = free_port()
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'[gateway]\nport = 0\n\n[upstreams.openai]\nkind = "openai"\nbase_url = "{upstream.url}/v1"\n'
        'api_key_env = "TEST_UPSTREAM_KEY"\n'
    )
    settings = Settings(nats_url=f"nats://127.0.0.1:{port}", prefix="mesh")
    env = env_for(settings, TEST_UPSTREAM_KEY=UPSTREAM_SECRET, MESH_ACTOR="alice")
    proc = await asyncio.create_subprocess_exec(
        MESH, "up", "--port", str(port), "--data-dir", str(tmp_path / "store"), "--no-dashboard",
        "--gateway", "--gateway-config", str(config),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        gw_port = (await _line(proc.stdout, r"gateway: http://127\.0\.0\.1:(\d+)")).group(1)
        key = (await _run(env, "gateway", "key", "create", AGENT)).strip()
        # Each call costs (11 * 0.15 + 7 * 0.60) / 1e6 USD: the cap allows three.
        await _run(env, "policy", "set", "cap", "agent://acme/*/*", "--limit", "cost_usd<=0.000015")
        ai = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{gw_port}/v1", api_key=key, max_retries=0)

        async def refused() -> openai.PermissionDeniedError | None:
            try:
                await ai.chat.completions.create(**CHAT)
            except openai.PermissionDeniedError as exc:
                return exc
            # sleep-ok: paces the spending calls: eventually() repeats this check until the cap refuses one
            await asyncio.sleep(0.1)
            return None

        exc = await eventually(refused, timeout=60)
        assert "policy:cap" in str(exc) and "cost_usd" in str(exc)
        calls = len(upstream.seen)
        assert calls >= 3
        for _ in range(3):
            with pytest.raises(openai.PermissionDeniedError):
                await ai.chat.completions.create(**CHAT)
        assert len(upstream.seen) == calls
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert UPSTREAM_SECRET not in err.decode() and key not in err.decode()

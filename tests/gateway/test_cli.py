"""``mesh gateway`` and ``mesh gateway key …`` as users run them: real processes, a real server."""

from __future__ import annotations

import asyncio
import json
import re
import signal
from pathlib import Path
from typing import Any

import openai
import pytest

from mesh.client.operator import AsyncMesh
from mesh.runtime.settings import Settings
from tests.cli.test_cli_commands import env_for, mesh_cli
from tests.gateway.conftest import AGENT, UPSTREAM_SECRET, eventually
from tests.gateway.upstream import FakeUpstream
from tests.operator_support import MESH

pytestmark = pytest.mark.timeout(90)

CHAT: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}


async def test_key_create_list_revoke(settings: Settings, conn: object) -> None:
    code, out, err = await mesh_cli(settings, "gateway", "key", "create", AGENT, "--instance", "w1")
    assert code == 0, err
    key = out.strip()
    assert key.startswith("mk-") and "shown once" in err
    code, out, _ = await mesh_cli(settings, "gateway", "key", "list", "--json")
    (row,) = json.loads(out)
    assert row["agent_uri"] == AGENT and row["instance"] == "w1" and row["revoked_at"] is None
    assert key not in out
    code, out, _ = await mesh_cli(settings, "gateway", "key", "revoke", row["id"])
    assert code == 0 and "revoked" in out
    code, out, _ = await mesh_cli(settings, "gateway", "key", "list")
    assert "revoked" in out and "by alice" in out
    code, _, err = await mesh_cli(settings, "gateway", "key", "create", "agent://bad")
    assert code != 0 and "agent://bad" in err
    code, _, err = await mesh_cli(settings, "gateway", "key", "revoke", "ffffffffffff")
    assert code != 0 and "no key" in err


async def test_mesh_gateway_runs_from_a_config_file(
    settings: Settings, conn: object, upstream: FakeUpstream, mesh: AsyncMesh, tmp_path: Path
) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'[gateway]\nport = 0\n\n[upstreams.openai]\nkind = "openai"\nbase_url = "{upstream.url}/v1"\n'
        'api_key_env = "TEST_UPSTREAM_KEY"\n'
    )
    code, out, err = await mesh_cli(settings, "gateway", "key", "create", AGENT)
    assert code == 0, err
    key = out.strip()
    proc = await asyncio.create_subprocess_exec(
        MESH, "gateway", "--config", str(config),
        env=env_for(settings, TEST_UPSTREAM_KEY=UPSTREAM_SECRET),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert match, line
        ai = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{match.group(1)}/v1", api_key=key, max_retries=0)
        out1 = await ai.chat.completions.create(**CHAT)
        assert out1.choices[0].message.content == "hello"
        assert upstream.seen[0].auth == f"Bearer {UPSTREAM_SECRET}"
        await mesh.kill(AGENT, reason="cli test", wait=0)

        async def refused() -> bool:
            try:
                await ai.chat.completions.create(**CHAT)
            except openai.PermissionDeniedError:
                return True
            return False

        await eventually(refused)
        assert len(upstream.seen) <= 2
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err_bytes = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err_bytes.decode()[-2000:]
    # Neither credential is ever logged.
    assert UPSTREAM_SECRET not in err_bytes.decode() and key not in err_bytes.decode()

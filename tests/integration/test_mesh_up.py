"""``mesh up``: the embedded server and controller in the foreground, run as a user would."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection
from tests.ports import free_port

MESH = str(Path(sys.executable).parent / "mesh")



def _start(port: int, data_dir: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "MESH_LOG_FORMAT": "json"}
    return subprocess.Popen(
        [MESH, "up", "--port", str(port), "--data-dir", str(data_dir), "--dashboard-port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _wait_line(proc: subprocess.Popen[str], fragment: str, timeout: float = 30) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if fragment in line:
            return line
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"{fragment!r} never printed; exit={proc.poll()}")


async def _put_and_get(url: str, value: bytes | None) -> bytes:
    async with Connection(Settings(nats_url=url)) as conn:
        kv = await conn.js.key_value(conn.ns.checkpoints_bucket)
        if value is not None:
            await kv.put("a.b.c.i", value)
        entry = await kv.get("a.b.c.i")
        return entry.value or b""


def test_up_serves_stops_cleanly_and_keeps_data(tmp_path: Path) -> None:
    port = free_port()
    proc = _start(port, tmp_path / "store")
    try:
        line = _wait_line(proc, "NATS_URL=")
        assert f"nats://127.0.0.1:{port}" in line
        page = _wait_line(proc, "dashboard: http://127.0.0.1:")
        assert "read-only" in page
        assert asyncio.run(_put_and_get(f"nats://127.0.0.1:{port}", b"kept")) == b"kept"

        second = subprocess.run(
            [MESH, "up", "--port", str(port), "--data-dir", str(tmp_path / "other")],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert second.returncode == 1
        assert f"port {port} is already in use" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    assert proc.returncode == 0

    proc = _start(port, tmp_path / "store")
    try:
        _wait_line(proc, "NATS_URL=")
        assert asyncio.run(_put_and_get(f"nats://127.0.0.1:{port}", None)) == b"kept"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert proc.returncode == 0

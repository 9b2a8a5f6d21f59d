"""bench/http_api.py at tiny N: it runs end to end and writes well-formed JSON (no timing is judged)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(180)
def test_http_api_bench_runs(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT), MESH_LOG_LEVEL="ERROR")
    cmd = [sys.executable, "-m", "bench.http_api", "--n", "20", "--kills", "2", "--seconds", "0.3",
           "--concurrency", "2", "--out", str(tmp_path)]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=170, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    data = json.loads((tmp_path / "http_api.json").read_text())
    json.dumps(data, allow_nan=False)
    results = data["results"]
    for series in ("floor_healthz", "heartbeat", "heartbeat_killed", "kill_to_poll_return"):
        assert results[series]["n"] > 0 and results[series]["p50"] is not None
    assert results["heartbeat_rps"] > 0 and results["floor_healthz_rps"] > 0
    assert set(results["verdicts"].values()) <= {"met", "MISSED"}
    assert "HTTP heartbeat throughput" in proc.stdout and "wrote" in proc.stdout

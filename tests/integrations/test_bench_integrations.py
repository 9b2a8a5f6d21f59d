"""bench/integrations.py runs at tiny N and writes well-formed JSON (the shape only: never a timing)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_integrations_writes_its_table_and_json(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT), MESH_LOG_LEVEL="ERROR")
    cmd = [sys.executable, "-m", "bench.integrations", "--runs", "2", "--n", "20", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Added work per call" in proc.stdout and "wrote" in proc.stdout
    data = json.loads((tmp_path / "integrations.json").read_text())
    assert data["bench"] == "integrations"
    assert {"cores", "python", "nats_py", "nats_server"} <= data["machine"].keys()
    frameworks = data["results"]["frameworks"]
    assert [f["added"]["integration"] for f in frameworks] == [
        "OpenAI Agents SDK",
        "LangGraph / LangChain",
        "MCP",
    ]
    for f in frameworks:
        assert all(v for v in f["versions"].values())
        assert f["end_to_end"]["switched_us"]["n"] == 2
        assert all(p["switched_us"]["n"] == 20 for p in f["added"]["parts"])
    json.dumps(data, allow_nan=False)

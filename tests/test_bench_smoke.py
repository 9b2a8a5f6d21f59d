"""Smoke test of bench/: each script runs at tiny N and writes well-formed JSON.

Benchmarks are not tests: nothing here looks at a timing, only at the shape of the results.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.run import PROFILES

ROOT = Path(__file__).resolve().parent.parent

MACHINE_KEYS = {"cores", "cpu_model", "python", "nats_py", "nats_server", "date"}


def _run(name: str, out: Path, timeout: float = 200) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), MESH_LOG_LEVEL="ERROR")
    cmd = [sys.executable, "-m", f"bench.{name}", *PROFILES["smoke"][name], "--out", str(out)]
    proc = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    path = out / f"{name}.json"
    assert path.exists(), f"{name} wrote no JSON"
    data = json.loads(path.read_text())
    assert data["bench"] == name
    assert data["machine"].keys() >= MACHINE_KEYS
    assert isinstance(data["params"], dict)
    assert isinstance(data["results"], dict)
    json.dumps(data, allow_nan=False)  # well-formed: no NaN/Infinity
    assert "wrote" in proc.stdout  # the human table was printed before the JSON was written
    return data


def _percentiles(p: dict[str, Any]) -> None:
    assert {"n", "p50", "p99", "max"} <= p.keys()
    assert p["n"] > 0


@pytest.mark.timeout(240)
def test_floor(tmp_path: Path) -> None:
    res = _run("floor", tmp_path)["results"]
    for key in ("request_reply_ms", "kv_put_republish_ms", "kv_put_ack_ms", "kill_ack_raw_ms"):
        _percentiles(res[key])
    assert res["pubsub"]["received"] > 0


@pytest.mark.timeout(240)
def test_quota(tmp_path: Path) -> None:
    res = _run("quota", tmp_path)["results"]
    assert res["hot_path"][0]["op"].startswith("Agent.spend")
    _percentiles(res["refill_ms"])
    _percentiles(res["sync_spend_refill_ms"])
    assert isinstance(res["spend_within_budget"], bool) and isinstance(res["refill_within_budget"], bool)


@pytest.mark.timeout(240)
def test_sdk_overhead(tmp_path: Path) -> None:
    res = _run("sdk_overhead", tmp_path)["results"]
    ops = {r["op"] for r in res["rows"]}
    assert {"bare function call", "Agent.heartbeat()", "Agent.checkpoint(state)", "@agent.guard call"} <= ops


@pytest.mark.timeout(240)
def test_kill_latency(tmp_path: Path) -> None:
    res = _run("kill_latency", tmp_path)["results"]
    _percentiles(res["floor"]["kill_ack_raw_ms"])
    assert set(res["by_n"]) == {"1", "3"}
    for r in res["by_n"].values():
        assert r["cycles"] >= 1
        assert {
            "all_acked_ms",
            "observed_ms",
            "acked_ms",
            "record_ms",
            "resume_all_ms",
            "ratio_to_floor",
        } <= r.keys()


@pytest.mark.timeout(240)
def test_ingest(tmp_path: Path) -> None:
    res = _run("ingest", tmp_path)["results"]
    assert res["floor"]["raw"]["published"] > 0
    assert res["controller"]["steps"]
    assert "rss_mb_at_instances" in res["summary"]


@pytest.mark.bench
@pytest.mark.timeout(240)
def test_peer_celery(tmp_path: Path) -> None:
    assert os.environ.get("BENCH_REDIS_SERVER") or shutil.which("redis-server"), (
        "redis-server not installed (apt-get install -y redis-server; `make bench-smoke` does it)"
    )
    res = _run("peer_celery", tmp_path)["results"]
    assert set(res["comparison"]) == {"1", "2"}
    for n in ("1", "2"):
        _percentiles(res["celery"]["by_n"][n]["all_replied_ms"])


@pytest.mark.bench
@pytest.mark.timeout(120)
def test_plot_from_results(tmp_path: Path) -> None:
    from bench.plot import plot_kill_latency

    latest = {
        "profile": "smoke",
        "kill_latency": {
            "machine": {"cores": 2},
            "results": {
                "floor": {"kill_ack_raw_ms": {"p50": 0.5}},
                "by_n": {
                    "1": {"all_acked_ms": {"p50": 1.0, "p99": 2.0}},
                    "10": {"all_acked_ms": {"p50": 3.0, "p99": 5.0}},
                },
            },
        },
    }
    out = plot_kill_latency(latest, tmp_path / "kill_latency.png")
    assert out is not None and out.stat().st_size > 1000


@pytest.mark.timeout(240)
def test_gateway_overhead(tmp_path: Path) -> None:
    res = _run("gateway_overhead", tmp_path)["results"]
    for key in (
        "direct",
        "via_gateway",
        "direct_ttfb",
        "via_gateway_ttfb",
        "kill_to_refused",
        "kill_to_stream_cut",
    ):
        _percentiles(res[key])
    assert res["rps_direct"] > 0 and res["rps_via_gateway"] > 0
    assert set(res["verdicts"].values()) <= {"met", "MISSED"}

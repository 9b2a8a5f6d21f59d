"""``mesh demo`` end to end: it must pass its own checks, finish by itself and leave no process behind."""

from __future__ import annotations

import subprocess

import pytest

from tests.operator_support import MESH

pytestmark = pytest.mark.timeout(120)


def test_mesh_demo_passes_and_cleans_up() -> None:
    result = subprocess.run([MESH, "demo"], capture_output=True, text=True, timeout=110, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    out = result.stdout
    assert "Kill signal sent to 3 instances of agent://myorg/production/email-campaign" in out
    for instance in ("us-central1-a", "us-central1-b", "us-east1-b"):
        assert f"{instance}:" in out and "PAUSED (batch " in out
        assert f"✓ {instance}: 1,200 sent, 0 duplicates, 0 missing" in out
    assert "3 instances resumed from checkpoint" in out
    assert "The kill switch works." in out
    leftover = subprocess.run(["pgrep", "-f", "examples/email_campaign.py"], capture_output=True, text=True)
    assert leftover.stdout.strip() == ""

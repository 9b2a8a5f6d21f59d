"""``mesh demo`` end to end: it must pass its own checks, finish by itself and leave no process behind.

The demo's own deadlines are stretched (MESH_DEMO_PATIENCE) so that a loaded CI machine does not
fail it for being slow: they bound a hang, and nothing here asserts how long anything took.
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from tests.operator_support import MESH

pytestmark = pytest.mark.timeout(300)

PATIENCE = "3"


def test_mesh_demo_passes_and_cleans_up() -> None:
    env = {**os.environ, "MESH_DEMO_PATIENCE": PATIENCE}
    result = subprocess.run([MESH, "demo"], capture_output=True, text=True, timeout=290, check=False, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    out = result.stdout
    assert "Kill signal sent to 3 instances of agent://myorg/production/email-campaign" in out
    for instance in ("us-central1-a", "us-central1-b", "us-east1-b"):
        assert re.search(rf"{instance}:\s+PAUSED \(batch ", out), instance
        assert f"✓ {instance}: 1,200 sent, 0 duplicates, 0 missing" in out
    assert "3 instances resumed from checkpoint" in out
    assert "The kill switch works." in out
    # No process of this demo is left: its agents' command lines name its own store directory.
    store = re.search(r"store in (\S+)", out)
    assert store is not None, out[:2000]
    leftover = subprocess.run(["pgrep", "-f", store.group(1)], capture_output=True, text=True, check=False)
    assert leftover.stdout.strip() == ""


def test_a_bad_patience_value_is_one_clear_line() -> None:
    env = {**os.environ, "MESH_DEMO_PATIENCE": "soon"}
    result = subprocess.run([MESH, "demo"], capture_output=True, text=True, timeout=60, check=False, env=env)
    assert result.returncode == 2
    assert (
        result.stderr.strip() == "mesh: error: MESH_DEMO_PATIENCE must be a number >= 1 (e.g. 3), not 'soon'"
    )

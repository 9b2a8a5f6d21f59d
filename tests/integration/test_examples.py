"""The README's examples: each runs for real, and the README quotes each file exactly."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mesh.runtime.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def _env(settings: Settings, **extra: str) -> dict[str, str]:
    return {**os.environ, "NATS_URL": settings.nats_url, "MESH_PREFIX": settings.prefix, **extra}


@pytest.mark.parametrize("name", ["quickstart_agent.py", "quickstart_operator.py", "budget_agent.py"])
def test_readme_quotes_the_example_exactly(name: str) -> None:
    readme = (ROOT / "README.md").read_text()
    code = (EXAMPLES / name).read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert code in blocks, f"README.md must quote examples/{name} verbatim in a ```python block"


def test_quickstart_agent_runs_to_the_end_and_resumes_from_its_checkpoint(settings: Settings) -> None:
    script = str(EXAMPLES / "quickstart_agent.py")
    first = subprocess.run([sys.executable, script], env=_env(settings, STEPS="5"),
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [f"sent email {n}" for n in range(5)]
    again = subprocess.run([sys.executable, script], env=_env(settings, STEPS="8"),
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == [f"sent email {n}" for n in range(5, 8)]
    assert "Traceback" not in again.stderr


def test_quickstart_operator_kills_and_resumes_the_agent(settings: Settings, tmp_path: Path) -> None:
    out = (tmp_path / "agent.out").open("w")
    agent = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "quickstart_agent.py")],
        env=_env(settings, STEPS="100000"),
        stdout=out,
        stderr=(tmp_path / "agent.err").open("w"),  # a file: a full pipe would block the agent
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while "sent email 3" not in (tmp_path / "agent.out").read_text():
            assert time.monotonic() < deadline and agent.poll() is None, "agent never got going"
            time.sleep(0.05)
        result = subprocess.run([sys.executable, str(EXAMPLES / "quickstart_operator.py")],
                                env=_env(settings), capture_output=True, text=True, timeout=60)  # fmt: skip
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert lines[0].startswith("replica-1: PAUSED {'step': ")
        assert lines[1] == "acknowledged: 1, silent: 0"
        assert lines[-1] == "resumed: ['replica-1']"
        sent = len((tmp_path / "agent.out").read_text().splitlines())
        deadline = time.monotonic() + 30
        while len((tmp_path / "agent.out").read_text().splitlines()) <= sent + 3:
            assert time.monotonic() < deadline, "agent did not continue after resume"
            time.sleep(0.05)
    finally:
        agent.terminate()
        agent.wait(30)
        out.close()
    numbers = [int(line.split()[-1]) for line in (tmp_path / "agent.out").read_text().splitlines()]
    assert numbers == list(range(len(numbers))), "an email was skipped or sent twice"

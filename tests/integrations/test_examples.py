"""The integration examples run for real (a restarted process continues a killed run); README quotes them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from mesh.protocol.models import AuditEvent
from mesh.runtime.settings import Settings
from tests.integration.sdk_helpers import DEADLINE, Ops, wait_until

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def _env(settings: Settings, **extra: str) -> dict[str, str]:
    return {**os.environ, "NATS_URL": settings.nats_url, "MESH_PREFIX": settings.prefix, **extra}


def _start(name: str, settings: Settings, out: Path, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(EXAMPLES / name)],
        env=_env(settings, **env),
        stdout=out.open("w"),  # a file: a full pipe would block the agent
        stderr=out.with_suffix(".err").open("w"),
        text=True,
    )


def _lines(out: Path) -> list[str]:
    return out.read_text().splitlines()


def _ack(ops: Ops, command_id: str) -> AuditEvent:
    acks: list[AuditEvent] = wait_until(lambda: ops.acks(command_id), what="the halted acknowledgement")
    return acks[0]


def _wait_line(proc: subprocess.Popen[str], out: Path, line: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while line not in _lines(out):
        assert proc.poll() is None, out.with_suffix(".err").read_text()
        assert time.monotonic() < deadline, f"the example never printed {line!r}"
        time.sleep(0.02)


def _emails(lines: list[str]) -> list[int]:
    return [int(line.split()[-1]) for line in lines if line.startswith("sent email ")]


def test_openai_agents_example_killed_then_a_restarted_process_continues_the_run_state(
    settings: Settings, ops: Ops, tmp_path: Path
) -> None:
    first = tmp_path / "first.out"
    proc = _start("openai_agents_agent.py", settings, first, STEPS="6")
    _wait_line(proc, first, "sent email 1")
    key, _, record = ops.kill("agent://acme/prod/oai-mailer")  # lands while the model "thinks"
    assert proc.wait(DEADLINE) == 3, first.with_suffix(".err").read_text()
    assert _lines(first)[-1].startswith("killed: agent killed by tester")
    ack = _ack(ops, record.command_id)
    saved: dict[str, Any] = ack.data["checkpoint"]["openai_agents"]
    assert saved["kind"] == "run_state" and ack.data["metadata"]["tool_calls"] == len(_emails(_lines(first)))
    ops.resume(key)

    again = tmp_path / "again.out"
    proc = _start("openai_agents_agent.py", settings, again, STEPS="6")
    assert proc.wait(DEADLINE) == 0, again.with_suffix(".err").read_text()
    assert _lines(again)[-1] == "sent 6 emails"
    assert _emails(_lines(first)) + _emails(_lines(again)) == list(range(6))  # each email exactly once


def test_langgraph_example_pauses_on_a_kill_and_continues_the_thread_on_resume(
    settings: Settings, ops: Ops, tmp_path: Path
) -> None:
    out = tmp_path / "graph.out"
    proc = _start("langgraph_agent.py", settings, out, STEPS="6")
    try:
        _wait_line(proc, out, "sent email 1")
        key, _, record = ops.kill("agent://acme/prod/graph-mailer")
        ack = _ack(ops, record.command_id)
        assert ack.data["status"] == "paused"
        assert ack.data["checkpoint"]["langgraph"]["kind"] == "interrupted"
        assert len(_emails(_lines(out))) == ack.data["metadata"]["tool_calls"]  # nothing sent since
        ops.resume(key)
        assert proc.wait(DEADLINE) == 0, out.with_suffix(".err").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert _lines(out)[-1] == "sent 6 emails" and _emails(_lines(out)) == list(range(6))


def test_mcp_example_stops_calling_tools_when_killed(settings: Settings, ops: Ops, tmp_path: Path) -> None:
    out = tmp_path / "mcp.out"
    proc = _start("mcp_agent.py", settings, out)
    try:
        _wait_line(proc, out, "sent email 2")
        _, _, record = ops.kill("agent://acme/prod/mcp-mailer")
        assert proc.wait(DEADLINE) == 3, out.with_suffix(".err").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    ack = _ack(ops, record.command_id)
    sent = _emails(_lines(out))
    assert sent == list(range(len(sent)))
    # Completed calls; a call the kill cut mid-flight may have reached the server first.
    assert len(sent) - ack.data["metadata"]["tool_calls"] in (0, 1)
    assert ack.data["metadata"]["last_tool"] == "send_email"


@pytest.mark.parametrize("name", ["openai_agents_agent.py", "langgraph_agent.py", "mcp_agent.py"])
def test_readme_quotes_the_integration_lines_of_each_example(name: str) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Agent frameworks", 1)[1].split("\n## ", 1)[0]
    code = {line.strip() for line in (EXAMPLES / name).read_text().splitlines()}
    quoted = [b for b in re.findall(r"```python\n(.*?)```", section, re.S) if f"# examples/{name}" in b]
    assert len(quoted) == 1, f"the README's framework section must quote examples/{name} once"
    lines = [line.strip() for line in quoted[0].splitlines()]
    lines = [line for line in lines if line and line != "..." and not line.startswith("# examples/")]
    assert lines and all(line in code for line in lines), f"the README's quote of examples/{name} drifted"

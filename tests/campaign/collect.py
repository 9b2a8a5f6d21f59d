"""Reading the final state for the checker: action logs, audit events, control writes, records, verify."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from mesh.client.operator import AsyncMesh
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection
from tests.chaos.helpers import all_events

from .topology import MESH_CLI, System


def read_actions(system: System) -> list[dict[str, Any]]:
    out = []
    for name in system.agents:
        path = system.agent_log(name)
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            try:
                out.append({**json.loads(line), "proc": name})
            except ValueError:  # a line cut by kill -9 mid-write never counted as an action
                continue
    return out


async def read_audit(settings: Settings) -> list[dict[str, Any]]:
    return [e.model_dump(mode="json") for e in await all_events(settings, attempts=8)]


async def read_control(settings: Settings) -> list[dict[str, Any]]:
    """Every write still stored in the control bucket's stream (history: 16 per key)."""
    async with Connection(settings, name="campaign-control") as conn:
        bucket = conn.ns.control_bucket
        stream = f"KV_{bucket}"
        info = await conn.js.stream_info(stream)
        out: list[dict[str, Any]] = []
        if info.state.messages == 0:
            return out
        sub = await conn.js.subscribe(f"$KV.{bucket}.>", ordered_consumer=True, stream=stream)
        try:
            while True:
                msg = await sub.next_msg(timeout=10)
                meta = msg.metadata
                op = (msg.headers or {}).get("KV-Operation", "PUT")
                out.append(
                    {
                        "seq": meta.sequence.stream,
                        "key": msg.subject.removeprefix(f"$KV.{bucket}."),
                        "op": op,
                        "t": meta.timestamp.timestamp(),
                    }
                )
                if meta.sequence.stream >= info.state.last_seq or meta.num_pending == 0:
                    break
        finally:
            await sub.unsubscribe()
        return out


async def final_keys(settings: Settings) -> list[str]:
    async with AsyncMesh(settings, name="campaign-final") as op:
        return sorted(h.key for h in await op.records())


def audit_verify(system: System, workdir: Path) -> dict[str, Any]:
    done = subprocess.run(
        [MESH_CLI, "audit", "verify", "--json"],
        env=system.env("admin"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    (workdir / "audit-verify.json").write_text(done.stdout)
    try:
        report = json.loads(done.stdout)
    except ValueError:
        report = {}
    return {
        "rc": done.returncode,
        "broken": report.get("broken"),
        "events": report.get("events"),
        "stderr": done.stderr.strip()[-500:],
    }

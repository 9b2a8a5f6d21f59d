"""What machine and which versions a bench ran on, for the JSON it writes."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
from collections.abc import Iterable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from mesh.transport.server import find_nats_server

__all__ = ["machine_info", "nats_server_version", "package_version", "package_versions"]


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def package_version(dist: str) -> str | None:
    """The installed version of distribution ``dist``, or ``None`` when it is not installed."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def package_versions(dists: Iterable[str]) -> dict[str, str | None]:
    return {d: package_version(d) for d in dists}


def nats_server_version() -> str:
    try:
        out = subprocess.run(
            [find_nats_server(), "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except Exception as exc:  # a missing binary must not stop the report
        return f"unknown ({type(exc).__name__})"
    text = (out.stdout or out.stderr).strip()
    return text.split()[-1].lstrip("v") if text else "unknown"


_MACHINE: dict[str, Any] | None = None


def machine_info() -> dict[str, Any]:
    """Cores, CPU model, Python, nats-py and nats-server versions, load and date of this run."""
    global _MACHINE
    if _MACHINE is None:
        _MACHINE = {
            "cores": os.cpu_count(),
            "cpu_model": _cpu_model(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "python_impl": platform.python_implementation(),
            "nats_py": package_version("nats-py"),
            "nats_server": nats_server_version(),
            "agent_mesh": package_version("agent-mesh"),
        }
    info = dict(_MACHINE)
    with contextlib.suppress(OSError):
        info["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    info["date"] = datetime.now(UTC).isoformat(timespec="seconds")
    return info

"""Shared bench helpers: machine info, percentiles, floor ratios, JSON results, tables, a server."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from mesh.runtime.logs import configure_logging
from mesh.runtime.settings import Settings
from mesh.transport.server import EmbeddedServer, find_nats_server

# The library's debug/info lines would drown the tables: warnings only, unless MESH_LOG_LEVEL says.
configure_logging(os.environ.get("MESH_LOG_LEVEL", "WARNING"))

__all__ = [
    "RESULTS_DIR",
    "ROOT",
    "Children",
    "PySpy",
    "bench_prefix",
    "bench_server",
    "bench_settings",
    "child_env",
    "cpu_seconds",
    "envelope",
    "fmt_ms",
    "fmt_rate",
    "fmt_ratio",
    "machine_info",
    "nats_server_pids",
    "percentiles",
    "print_table",
    "ratio",
    "standard_args",
    "summarise_collapsed",
    "wait_until",
    "write_json",
]

RESULTS_DIR = Path(__file__).resolve().parent / "results"
#: The repository root: children run ``python -m bench.<x>`` from here, installed or not.
ROOT = Path(__file__).resolve().parent.parent


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a bench child process: this repo importable, unbuffered output."""
    path = os.environ.get("PYTHONPATH")
    env = dict(
        os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=f"{ROOT}{os.pathsep}{path}" if path else str(ROOT)
    )
    env.update(extra)
    return env


# -- machine ----------------------------------------------------------------------------------
def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


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
            "nats_py": _version("nats-py"),
            "nats_server": nats_server_version(),
            "agent_mesh": _version("agent-mesh"),
        }
    info = dict(_MACHINE)
    with contextlib.suppress(OSError):
        info["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    info["date"] = datetime.now(UTC).isoformat(timespec="seconds")
    return info


# -- statistics -------------------------------------------------------------------------------
def _quantile(ordered: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), on sorted data."""
    if len(ordered) == 1:
        return float(ordered[0])
    pos = q * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return float(ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo))


def percentiles(samples: Sequence[float], digits: int = 4) -> dict[str, Any]:
    """``n, p50, p99, max, min, mean`` of ``samples`` (``None`` values when there are none)."""
    if not samples:
        return {"n": 0, "p50": None, "p99": None, "max": None, "min": None, "mean": None}
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "p50": round(_quantile(ordered, 0.50), digits),
        "p99": round(_quantile(ordered, 0.99), digits),
        "max": round(float(ordered[-1]), digits),
        "min": round(float(ordered[0]), digits),
        "mean": round(sum(ordered) / len(ordered), digits),
    }


def ratio(value: float | None, floor: float | None, digits: int = 2) -> float | None:
    """``value / floor``, or ``None`` when either is missing or the floor is zero."""
    if value is None or floor is None or floor == 0:
        return None
    return round(value / floor, digits)


# -- output -----------------------------------------------------------------------------------
def fmt_ms(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}" if value < 1 else f"{value:.2f}"


def fmt_rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}x"


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A plain aligned table on stdout."""
    cells = [[str(h) for h in headers], *[["-" if c is None else str(c) for c in r] for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(cells[0], widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in cells[1:]:
        print(
            "  ".join(
                c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    sys.stdout.flush()


def envelope(name: str, params: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
    """The JSON shape every script writes."""
    return {"bench": name, "schema": 1, "machine": machine_info(), "params": params, "results": results}


def write_json(name: str, data: dict[str, Any], out_dir: Path | None = None) -> Path:
    directory = out_dir or RESULTS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    tmp.replace(path)
    print(f"\nwrote {path}")
    return path


def standard_args(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="directory for the JSON result")
    parser.add_argument(
        "--nats-url", default=None, help="use this server instead of starting an embedded one (loopback only)"
    )
    return parser


# -- server -----------------------------------------------------------------------------------
@contextlib.contextmanager
def bench_server(url: str | None = None) -> Iterator[str]:
    """Yield the URL of a server: ``url`` if given, else a fresh embedded one on a free port."""
    if url:
        host = url.split("://", 1)[-1].split(":", 1)[0]
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise SystemExit(f"bench talks to loopback only, not {host}")
        yield url
        return
    with tempfile.TemporaryDirectory(prefix="mesh-bench-") as tmp:
        server = EmbeddedServer(Path(tmp) / "nats", port=0)
        server.start()
        try:
            yield server.url
        finally:
            server.stop()


def bench_prefix() -> str:
    return "b" + uuid.uuid4().hex[:10]


def bench_settings(url: str, prefix: str | None = None) -> Settings:
    return Settings(nats_url=url, prefix=prefix or bench_prefix(), actor="bench", connect_timeout=5.0)


async def wait_until(predicate: Any, timeout: float, interval: float = 0.005) -> bool:
    """Poll ``predicate()`` until true or ``timeout`` seconds; bounded."""
    import asyncio

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(interval)
    return bool(predicate())


# -- child processes --------------------------------------------------------------------------
class Children:
    """Child processes started by a bench, ended by their own pids (SIGTERM, then SIGKILL)."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(
        self, *args: str, stdout: int | None = subprocess.DEVNULL, log: Path | None = None
    ) -> subprocess.Popen[bytes]:
        err: Any = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - the child owns it
        try:
            proc = subprocess.Popen(
                [sys.executable, *args],
                stdout=stdout,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env=child_env(),
                cwd=ROOT,
            )
        finally:
            if log:
                err.close()
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self, timeout: float = 15.0) -> None:
        for proc in list(self.procs):
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + timeout
        for proc in list(self.procs):
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.procs.clear()

    def __enter__(self) -> Children:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


# -- profiling ----------------------------------------------------------------------------------
class PySpy:
    """``py-spy record`` on some pids (collapsed stacks), stopped with SIGINT; summarised after."""

    def __init__(self, out_dir: Path, targets: dict[str, int], rate: int = 200) -> None:
        self.out_dir = out_dir
        self.targets = targets
        self.rate = rate
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self) -> None:
        import shutil
        import signal  # noqa: F401 - used in stop

        binary = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for name, pid in self.targets.items():
            self.procs[name] = subprocess.Popen(
                [
                    binary,
                    "record",
                    "--pid",
                    str(pid),
                    "--rate",
                    str(self.rate),
                    "--format",
                    "raw",
                    "--output",
                    str(self.out_dir / f"{name}.collapsed"),
                    "--nonblocking",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                stdin=subprocess.DEVNULL,
            )

    def stop(self) -> dict[str, Any]:
        import signal

        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        return {name: summarise_collapsed(self.out_dir / f"{name}.collapsed") for name in self.procs}


def summarise_collapsed(path: Path, top: int = 15) -> dict[str, Any]:
    """Top functions by self and by inclusive samples from a py-spy collapsed-stack file."""
    if not path.exists():
        return {"error": f"no profile written at {path}"}
    self_c: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        total += count
        frames = [
            f.split(" (")[0] + " (" + f.split(" (")[1].split(":")[0].rsplit("/", 1)[-1] + ")"
            if " (" in f
            else f
            for f in stack.split(";")
        ]
        self_c[frames[-1]] = self_c.get(frames[-1], 0) + count
        for f in set(frames):
            incl[f] = incl.get(f, 0) + count

    def ranked(d: dict[str, int]) -> list[list[Any]]:
        return [[f, c, round(100 * c / total, 1)] for f, c in sorted(d.items(), key=lambda kv: -kv[1])[:top]]

    return {"samples": total, "file": str(path), "top_self": ranked(self_c), "top_inclusive": ranked(incl)}


def nats_server_pids() -> list[int]:
    """The nats-server processes started by this process (the embedded server)."""
    import psutil

    return [p.pid for p in psutil.Process().children(recursive=True) if "nats-server" in (p.name() or "")]


def cpu_seconds(groups: dict[str, list[int]]) -> dict[str, float]:
    """User+system CPU seconds so far, summed per group of pids (gone processes count 0)."""
    import psutil

    out: dict[str, float] = {}
    for name, pids in groups.items():
        total = 0.0
        for pid in pids:
            with contextlib.suppress(psutil.Error):
                t = psutil.Process(pid).cpu_times()
                total += t.user + t.system
        out[name] = total
    return out

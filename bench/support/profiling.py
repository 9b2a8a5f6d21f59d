"""Where a bench's CPU goes: CPU seconds per process group, and py-spy profiles summarised."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["PySpy", "cpu_seconds", "nats_server_pids", "summarise_collapsed"]


class PySpy:
    """``py-spy record`` on some pids (collapsed stacks), stopped with SIGINT; summarised after."""

    def __init__(self, out_dir: Path, targets: dict[str, int], rate: int = 200) -> None:
        self.out_dir = out_dir
        self.targets = targets
        self.rate = rate
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self) -> None:
        binary = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for name, pid in self.targets.items():
            out = str(self.out_dir / f"{name}.collapsed")
            self.procs[name] = subprocess.Popen(
                [binary, "record", "--pid", str(pid), "--rate", str(self.rate), "--format", "raw",
                 "--output", out, "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
            )  # fmt: skip

    def stop(self) -> dict[str, Any]:
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


def _frame(f: str) -> str:
    """``func (path/file.py:12)`` -> ``func (file.py)``: one name per function, not per line."""
    if " (" not in f:
        return f
    parts = f.split(" (")
    return parts[0] + " (" + parts[1].split(":")[0].rsplit("/", 1)[-1] + ")"


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
        frames = [_frame(f) for f in stack.split(";")]
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

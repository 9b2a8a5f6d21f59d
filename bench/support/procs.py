"""Child processes of a bench: their environment, their start and stop, and how work is split among them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["ROOT", "Children", "child_env", "free_port", "shares", "spawn_controller"]

#: The repository root: children run ``python -m bench.<x>`` from here, installed or not.
ROOT = Path(__file__).resolve().parent.parent.parent


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a bench child process: this repo importable, unbuffered output."""
    path = os.environ.get("PYTHONPATH")
    env = dict(
        os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=f"{ROOT}{os.pathsep}{path}" if path else str(ROOT)
    )
    env.update(extra)
    return env


def free_port() -> int:
    """A loopback TCP port free just now (for a child that cannot be told port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def shares(total: int, parts: int) -> list[int]:
    """``total`` split over ``parts`` children: equal shares, the remainder to the last."""
    share = total // parts
    return [share if p < parts - 1 else total - share * (parts - 1) for p in range(parts)]


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


def spawn_controller(
    kids: Children, url: str, prefix: str, *extra: str, log: Path | None = None
) -> subprocess.Popen[bytes]:
    """The controller in a process of its own (:mod:`bench._controller_proc`), once it says "ready".

    Blocks on the child's first line: async callers run it in a thread.
    """
    proc = kids.spawn("-m", "bench._controller_proc", url, prefix, *extra, stdout=subprocess.PIPE, log=log)
    assert proc.stdout is not None
    proc.stdout.readline()
    return proc

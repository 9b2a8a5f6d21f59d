"""What every bench script starts from: quiet logging, its standard arguments, a server, settings."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.support.report import RESULTS_DIR
from mesh.runtime.logs import configure_logging
from mesh.runtime.settings import Settings
from mesh.transport.server import EmbeddedServer

# The library's debug/info lines would drown the tables: warnings only, unless MESH_LOG_LEVEL says.
configure_logging(os.environ.get("MESH_LOG_LEVEL", "WARNING"))

__all__ = ["bench_prefix", "bench_server", "bench_settings", "request_json", "standard_args"]


def standard_args(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="directory for the JSON result")
    parser.add_argument(
        "--nats-url", default=None, help="use this server instead of starting an embedded one (loopback only)"
    )
    return parser


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


async def request_json(nc: Any, subject: str, timeout: float = 5.0) -> dict[str, Any]:
    """A request to one of the bench's own child processes, answered with a JSON object."""
    msg = await nc.request(subject, b"", timeout=timeout)
    return dict(json.loads(msg.data))

"""A real Prometheus (Debian's ``prometheus`` package) scraping given targets, and its HTTP query API."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import missing_tool
from tests.ports import free_port

PROMETHEUS = "prometheus"


def find_prometheus() -> str:
    path = shutil.which(PROMETHEUS)
    if path is None:
        missing_tool("prometheus is not installed (apt-get install -y prometheus; .ci/run does it)")
        raise AssertionError("unreachable")  # missing_tool always fails
    return path



class Prometheus:
    """``prometheus`` in a subprocess, scraping ``targets`` every second; its data in ``workdir``."""

    def __init__(self, workdir: Path, job: str, targets: list[str]) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = workdir / "prometheus.yml"
        quoted = ", ".join(f"'{t}'" for t in targets)
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
            f"scrape_configs:\n  - job_name: '{job}'\n    static_configs:\n      - targets: [{quoted}]\n"
        )
        self.log = workdir / "prometheus.log"
        self._args = [
            find_prometheus(),
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Prometheus:
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(self._args, stdout=out, stderr=subprocess.STDOUT, cwd=self.workdir)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def died(self) -> str | None:
        if self.proc is not None and self.proc.poll() is not None:
            return f"prometheus exited {self.proc.returncode}: {self.log.read_text()[-2000:]}"
        return None

    async def ready(self) -> bool:
        if (why := self.died()) is not None:
            raise AssertionError(why)
        try:
            async with aiohttp.ClientSession() as s, s.get(f"{self.url}/-/ready") as resp:
                return resp.status == 200
        except aiohttp.ClientError:
            return False

    async def query(self, promql: str) -> list[dict[str, Any]]:
        """The instant query's result vector (``/api/v1/query``)."""
        async with (
            aiohttp.ClientSession() as s,
            s.get(f"{self.url}/api/v1/query", params={"query": promql, "time": f"{time.time():.3f}"}) as resp,
        ):
            body = await resp.json()
        assert body["status"] == "success", body
        assert body["data"]["resultType"] == "vector", body
        return list(body["data"]["result"])

    async def scalar(self, promql: str) -> float | None:
        """The value of a one-element result, or None while there is none."""
        result = await self.query(promql)
        return float(result[0]["value"][1]) if len(result) == 1 else None

"""The system under test: nats-server (one node or a 3-node cluster), the controller, agent processes."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection
from mesh.transport.provision import ProvisionOptions, provision
from mesh.transport.server import EmbeddedServer
from tests.chaos.cluster import loopback_cluster
from tests.chaos.conftest import ROLES
from tests.tcpproxy import TcpProxy

MESH_CLI = str(Path(sys.executable).parent / "mesh")
ROOT = Path(__file__).resolve().parents[2]
PREFIX = "mesh"

#: Each agent process hosts two instances; together they span instances, agents, envs and orgs.
FLEET: dict[str, list[str]] = {
    "p0": ["agent://acme/prod/mailer#p0a", "agent://acme/dev/crawler#p0b"],
    "p1": ["agent://acme/prod/mailer#p1a", "agent://globex/prod/billing#p1b"],
    "p2": ["agent://globex/prod/billing#p2a", "agent://globex/dev/crawler#p2b"],
}
#: The process whose connections run through the fault proxy.
PROXIED = "p2"


@dataclass
class Proc:
    """A child process the campaign starts, kills and restarts; an exit it did not cause is recorded."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0
    expected_exit: bool = False
    frozen: bool = False

    def start(self) -> None:
        self.expected_exit = False
        self.frozen = False
        with open(self.log, "ab") as out:
            self.popen = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.starts += 1

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None else None

    def died(self) -> int | None:
        """The return code of an exit nobody asked for, once; None while running or when expected."""
        if self.popen is None or self.expected_exit:
            return None
        rc = self.popen.poll()
        if rc is None:
            return None
        self.expected_exit = True
        return rc

    def kill9(self) -> None:
        self.expected_exit = True
        if self.popen is not None and self.popen.poll() is None:
            if self.frozen:
                self.popen.send_signal(signal.SIGCONT)
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(10)
        self.frozen = False

    def freeze(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGSTOP)
            self.frozen = True

    def thaw(self) -> None:
        if self.popen is not None and self.popen.poll() is None and self.frozen:
            self.popen.send_signal(signal.SIGCONT)
        self.frozen = False

    def stop(self) -> None:
        self.expected_exit = True
        if self.popen is None or self.popen.poll() is not None:
            return
        self.thaw()
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(15)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)

    def tail(self, n: int = 6) -> list[str]:
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return []
        return [line[:300] for line in lines if line.strip()][-n:]


async def _provision(settings: Settings) -> None:
    async with Connection(settings, name="campaign-init") as conn:
        await provision(conn.js, conn.ns, ProvisionOptions())


@dataclass
class System:
    kind: str  # "single" or "cluster"
    workdir: Path
    servers: list[EmbeddedServer] = field(default_factory=list)
    passwords: dict[str, str] = field(default_factory=dict)
    proxy: TcpProxy | None = None
    controller: Proc | None = None
    agents: dict[str, Proc] = field(default_factory=dict)

    # -- settings per role ------------------------------------------------------------------------
    @property
    def urls(self) -> str:
        return ",".join(s.url for s in self.servers)

    def creds(self, role: str) -> tuple[str | None, str | None]:
        if not self.passwords:
            return None, None
        return role, self.passwords[f"MESH_{role.upper()}_PASSWORD"]

    def settings(self, role: str, url: str | None = None) -> Settings:
        user, password = self.creds(role)
        return Settings(
            nats_url=url or self.urls,
            user=user,
            password=password,
            prefix=PREFIX,
            actor=f"campaign-{role}",
            connect_timeout=3.0,
        )

    def env(self, role: str, url: str | None = None) -> dict[str, str]:
        user, password = self.creds(role)
        env = {**os.environ, "NATS_URL": url or self.urls, "MESH_PREFIX": PREFIX}
        env["MESH_ACTOR"] = f"campaign-{role}"
        for k in ("NATS_USER", "NATS_PASSWORD", "CAMPAIGN_USER", "CAMPAIGN_PASSWORD"):
            env.pop(k, None)
        if user and password:
            env.update(NATS_USER=user, NATS_PASSWORD=password, CAMPAIGN_USER=user, CAMPAIGN_PASSWORD=password)
        return env

    # -- lifecycle --------------------------------------------------------------------------------
    def start_servers(self) -> None:
        if self.kind == "single":
            self.servers = [EmbeddedServer(self.workdir / "nats", port=0)]
        else:
            self.passwords = {f"MESH_{r}_PASSWORD": "pw-" + secrets.token_urlsafe(12) for r in ROLES}
            os.environ.update(self.passwords)  # nats.conf reads the role passwords from the environment
            self.servers = [n.server for n in loopback_cluster(self.workdir, self.passwords)]
        for server in self.servers:
            server.start()

    def init_mesh(self) -> None:
        """``mesh init`` as an operator would run it (``--replicas 3`` on the cluster), retried
        while a fresh cluster elects its JetStream meta leader."""
        if self.kind == "single":  # in-process: a CLI start-up less in the short run of `make test`
            asyncio.run(_provision(self.settings("admin")))
            return
        replicas = "3"
        deadline = time.monotonic() + 90
        while True:
            done = subprocess.run(
                [MESH_CLI, "init", "--replicas", replicas],
                env=self.env("admin"),
                capture_output=True,
                text=True,
                timeout=60,
            )
            if done.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"mesh init failed: {done.stdout} {done.stderr}")
            # sleep-ok: the retry interval: mesh init is retried until it succeeds or the deadline passes
            time.sleep(1.0)

    def start_controller(self) -> None:
        args = ["--lost-after", "8", "--lease-ttl", "2", "--refresh-every", "0.5", "--sweep-every", "0.3"]
        self.controller = Proc(
            "controller",
            [MESH_CLI, "controller", *args],
            self.env("controller"),
            self.workdir / "controller.log",
        )
        self.controller.start()

    def start_agents(self) -> None:
        upstream = self.servers[0].port
        self.proxy = TcpProxy(upstream)
        for name, members in FLEET.items():
            if name == PROXIED:
                url = self.proxy.url
            elif self.kind == "cluster":
                url = self.servers[int(name[1:]) % len(self.servers)].url  # learns the rest from it
            else:
                url = self.urls
            argv = [
                sys.executable, "-m", "tests.campaign.agent_host",
                "--url", url, "--prefix", PREFIX,
                "--log", str(self.agent_log(name)), "--instances", ",".join(members),
            ]  # fmt: skip
            proc = Proc(name, argv, self.env("agent", url), self.workdir / f"{name}.stderr")
            proc.start()
            self.agents[name] = proc

    def agent_log(self, name: str) -> Path:
        return self.workdir / f"{name}.jsonl"

    def shutdown(self) -> None:
        procs = list(self.agents.values())
        for proc in procs:  # all at once: each may take a moment to report ``stopped``
            proc.expected_exit = True
            proc.thaw()
            if proc.popen is not None and proc.popen.poll() is None:
                proc.popen.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.stop()
        if self.controller is not None:
            self.controller.stop()
        if self.proxy is not None:
            self.proxy.close()
        for server in self.servers:
            server.kill()

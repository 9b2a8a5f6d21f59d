"""The nats-server cluster of ``compose.yaml``, run on loopback: the same nats.conf and the same flags.

``compose.yaml`` is the single source of the cluster's configuration; these helpers read it and
rewrite only what must differ on one machine (host names become 127.0.0.1, ports become free ports,
the store goes to a temp dir), so that a test of the cluster tests what compose runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

from mesh.transport.server import EmbeddedServer
from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"
NATS_CONF = ROOT / "nats.conf"

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
#: Flags EmbeddedServer sets itself (config file, listen address, store, name).
_OWN_FLAGS = {"-c": 1, "-js": 0, "-sd": 1, "-n": 1, "-a": 1, "-p": 1, "-m": 1}


def load_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def nats_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: svc
        for name, svc in compose["services"].items()
        if str(svc.get("image", "")).split(":")[0] in ("nats", "docker.io/library/nats")
    }


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose-style ``${VAR}``, ``${VAR:?msg}``, ``${VAR:-default}`` substitution."""

    def sub(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        if name in env and (env[name] or not (op or "").startswith(":")):
            return env[name]
        if op and op.endswith("-"):
            return arg or ""
        raise KeyError(f"{name} is required: {arg}")

    return _VAR.sub(sub, text)


def parse_flags(command: list[str]) -> dict[str, str | bool]:
    """``[nats-server, -c, file, -js, ...]`` -> ``{"-c": file, "-js": True, ...}``."""
    args = list(command)
    if args and not args[0].startswith("-"):
        args = args[1:]
    flags: dict[str, str | bool] = {}
    i = 0
    while i < len(args):
        flag = args[i]
        assert flag.startswith("-"), f"unexpected argument {flag!r} in {command}"
        if i + 1 < len(args) and not args[i + 1].startswith("-"):
            flags[flag] = args[i + 1]
            i += 2
        else:
            flags[flag] = True
            i += 1
    return flags



def _rehost(url: str, ports: dict[str, int], host_of_self: str | None = None) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    target = host_of_self if host in ("0.0.0.0", "") and host_of_self else host
    userinfo = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit((parts.scheme, f"{userinfo}127.0.0.1:{ports[target]}", parts.path, "", ""))


@dataclass
class ClusterNode:
    service: str
    server: EmbeddedServer


def loopback_cluster(base_dir: Path, env: dict[str, str]) -> list[ClusterNode]:
    """EmbeddedServers for compose.yaml's nats services (not started), wired on loopback."""
    compose = load_compose()
    services = nats_services(compose)
    client_ports = {name: free_port() for name in services}
    cluster_ports = {name: free_port() for name in services}
    nodes = []
    for name, svc in services.items():
        flags = parse_flags([interpolate(str(a), env) for a in svc["command"]])
        extra: list[str] = []
        for flag, value in flags.items():
            if flag in _OWN_FLAGS:
                continue
            if flag == "--cluster":
                value = _rehost(str(value), cluster_ports, host_of_self=name)
            elif flag == "--routes":
                value = ",".join(_rehost(u, cluster_ports) for u in str(value).split(","))
            extra += [flag] if value is True else [flag, str(value)]
        server = EmbeddedServer(
            base_dir / name,
            port=client_ports[name],
            config_file=NATS_CONF,
            server_name=str(flags.get("-n", name)),
            extra_args=extra,
        )
        nodes.append(ClusterNode(name, server))
    return nodes

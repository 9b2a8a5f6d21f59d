"""compose.yaml, checked without a Docker engine: structure, the mounted nats.conf, consistent
cluster routes, named JetStream volumes, every password variable supplied and none defaulted.

``docker-compose config`` validates it too; .ci/run installs the compose CLI, so CI never skips it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from urllib.parse import urlsplit

import pytest

from tests.chaos.cluster import COMPOSE, NATS_CONF, interpolate, load_compose, nats_services, parse_flags
from tests.conftest import missing_tool

pytestmark = pytest.mark.timeout(60)

CONF_VARS = sorted(set(re.findall(r"\$(MESH_[A-Z_]+)", NATS_CONF.read_text())))
ENV = {var: f"test-{var.lower()}" for var in [*CONF_VARS, "MESH_ROUTE_PASSWORD"]}


def test_nats_conf_reads_every_role_password_from_the_environment() -> None:
    assert (
        sorted(
            f"MESH_{r}_PASSWORD"
            for r in ("ADMIN", "AGENT", "OPERATOR", "CONTROLLER", "AUDITOR", "GATEWAY", "SYS")
        )
        == CONF_VARS
    )
    text = NATS_CONF.read_text()
    assert not re.search(r"password:\s*[\"']?[A-Za-z0-9]", text), "a literal password in nats.conf"


def test_three_node_cluster_shape() -> None:
    compose = load_compose()
    nodes = nats_services(compose)
    assert len(nodes) == 3
    named_volumes = set(compose.get("volumes") or {})
    cluster_names: set[str] = set()
    names: set[str] = set()
    stores: set[str] = set()
    listen_ports: dict[str, int | None] = {}
    for service, svc in nodes.items():
        assert svc["image"].startswith("nats:"), "the official nats image"
        flags = parse_flags([interpolate(str(a), ENV) for a in svc["command"]])
        # the repository's nats.conf, mounted read-only where -c points
        mounts = {v.split(":")[1]: v for v in svc["volumes"]}
        conf_mount = mounts[flags["-c"]]
        assert conf_mount.split(":")[0] in ("./nats.conf", "nats.conf") and conf_mount.endswith(":ro")
        # JetStream on, its store on a named volume of its own
        assert flags["-js"] is True
        store_volume = mounts[flags["-sd"]].split(":")[0]
        assert store_volume in named_volumes
        stores.add(store_volume)
        # every password variable nats.conf reads is given to the container, with no default
        env = svc["environment"]
        for var in CONF_VARS:
            assert var in env, f"{service} lacks {var}"
            assert ":?" in str(env[var]) or "${" + var + "}" in str(env[var]), f"{var} must be required"
            assert ":-" not in str(env[var]), f"{var} has a default"
        names.add(str(flags["-n"]))
        cluster_names.add(str(flags["--cluster_name"]))
        listen = urlsplit(str(flags["--cluster"]))
        assert listen.username == "route" and listen.password == ENV["MESH_ROUTE_PASSWORD"], "route auth"
        listen_ports[service] = listen.port
    assert len(names) == 3, "server names must be unique"
    assert len(cluster_names) == 1
    assert len(stores) == 3, "each node needs its own store volume"

    # routes: each node solicits every other node, at that node's cluster port, with the route credentials
    for service, svc in nodes.items():
        flags = parse_flags([interpolate(str(a), ENV) for a in svc["command"]])
        routes = [urlsplit(u) for u in str(flags["--routes"]).split(",")]
        assert {r.hostname for r in routes} == set(nodes) - {service}
        for r in routes:
            assert r.port == listen_ports[r.hostname]
            assert (r.username, r.password) == ("route", ENV["MESH_ROUTE_PASSWORD"])
        assert svc.get("hostname", service) == service


def test_controller_and_provisioner() -> None:
    compose = load_compose()
    services = compose["services"]
    nodes = nats_services(compose)
    controller = services["controller"]
    env = controller["environment"]
    urls = [urlsplit(u) for u in env["NATS_URL"].split(",")]
    assert {u.hostname for u in urls} == set(nodes) and {u.port for u in urls} == {4222}
    assert env["NATS_USER"] == "controller"
    assert "MESH_CONTROLLER_PASSWORD:?" in env["NATS_PASSWORD"]
    assert "mesh controller" in " ".join(controller["command"]) + " ".join(controller.get("entrypoint", []))
    assert controller["depends_on"]["provision"]["condition"] == "service_completed_successfully"
    provision = services["provision"]
    assert provision["environment"]["NATS_USER"] == "admin"
    assert "mesh init --replicas 3" in " ".join(provision["command"])
    for node in nodes:
        assert provision["depends_on"][node]["condition"] == "service_healthy"
    for svc in (controller, provision):
        assert svc["environment"].get("MESH_PREFIX", "mesh") == "mesh", "nats.conf is written for prefix mesh"
    assert all(n in nodes for n in ("nats-1", "nats-2", "nats-3"))


def test_compose_refuses_to_start_without_passwords() -> None:
    text = COMPOSE.read_text()
    with pytest.raises(KeyError, match="MESH_AGENT_PASSWORD"):
        interpolate(text, {k: v for k, v in ENV.items() if k != "MESH_AGENT_PASSWORD"})
    interpolate(text, ENV)  # and everything it needs is in ENV


def _compose_cli() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


def test_docker_compose_config_when_available() -> None:
    cli = _compose_cli()
    if cli is None:
        missing_tool("no docker-compose here (apt-get install -y docker-compose; .ci/run does it)")
    result = subprocess.run(
        [*cli, "-f", str(COMPOSE), "config", "-q"], env={**ENV, "PATH": "/usr/bin:/bin:/usr/local/bin"},
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr

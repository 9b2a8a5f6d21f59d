"""compose.yaml's Prometheus: its inline scrape config is valid (promtool) and points at the real ports."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chaos.cluster import load_compose
from tests.conftest import missing_tool

pytestmark = pytest.mark.timeout(60)


def scrape_config(compose: dict[str, Any]) -> str:
    script = "\n".join(compose["services"]["prometheus"]["command"])
    m = re.search(r"<<'CONFIG'\n(.*?)\nCONFIG\n", script, re.S)
    assert m, "the prometheus service writes its config from a CONFIG heredoc"
    return m.group(1)


def flag(command: str, name: str) -> str:
    m = re.search(rf"{name}[ =](\S+)", command)
    assert m, f"{name} missing from {command!r}"
    return m.group(1)


def test_scrape_targets_are_the_services_metrics_ports() -> None:
    compose = load_compose()
    services = compose["services"]
    config = yaml.safe_load(scrape_config(compose))
    targets = {
        job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
        for job in config["scrape_configs"]
    }
    controller = "\n".join(services["controller"]["command"])
    gateway = "\n".join(services["gateway"]["command"])
    assert targets == {
        "mesh-controller": [f"controller:{flag(controller, '--metrics-port')}"],
        "mesh-gateway": [f"gateway:{flag(gateway, '--port')}"],
    }
    # reachable from the Prometheus container: the controller listens beyond its loopback
    assert flag(controller, "--metrics-host") == "0.0.0.0"
    prom = services["prometheus"]
    assert all(p.startswith("127.0.0.1:") for p in prom["ports"]), "Prometheus on the host's loopback only"
    assert "mesh" in prom["networks"]
    assert any(v.split(":")[0] in compose["volumes"] for v in prom["volumes"]), "its data on a named volume"


def test_promtool_accepts_the_scrape_config(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        missing_tool("promtool is not installed (apt-get install -y prometheus; .ci/run does it)")
        return
    path = tmp_path / "prometheus.yml"
    path.write_text(scrape_config(load_compose()))
    result = subprocess.run(
        [promtool, "check", "config", str(path)], capture_output=True, text=True, check=False, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr

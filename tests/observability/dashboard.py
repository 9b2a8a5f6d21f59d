"""docs/grafana-dashboard.json's queries, with Grafana's variables filled in for a test Prometheus."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"
METRIC = re.compile(r"\b(mesh_[a-z_]+)")


def load() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def queries(rate_interval: str = "10s") -> list[tuple[str, str]]:
    """(panel title, PromQL) for every target, ``$__rate_interval`` and ``$job`` substituted."""
    out = []
    for panel in load()["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"].replace("$__rate_interval", rate_interval).replace("$job", ".*")
            out.append((panel["title"], expr))
    return out


def metric_names(exprs: list[str]) -> set[str]:
    """The series names the queries read (histogram suffixes kept: ``_bucket`` is a series)."""
    return {m for e in exprs for m in METRIC.findall(e)}

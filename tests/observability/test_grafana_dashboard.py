"""docs/grafana-dashboard.json: importable shape, and the four views the issue asks for."""

from __future__ import annotations

from tests.observability.dashboard import load, metric_names, queries


def test_dashboard_shape() -> None:
    dash = load()
    panels = dash["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    source = variables["datasource"]
    assert source["type"] == "datasource" and source["query"] == "prometheus"
    for p in panels:
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        assert p["targets"] and all(t["expr"].strip() for t in p["targets"]), p["title"]
        pos = p["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, p["title"]


def test_dashboard_covers_fleet_kill_latency_ingest_and_breaches() -> None:
    by_title: dict[str, list[str]] = {}
    for title, expr in queries():
        by_title.setdefault(title, []).append(expr)
    names = metric_names([e for es in by_title.values() for e in es])
    assert {
        "mesh_fleet_instances",
        "mesh_kill_ack_latency_seconds_bucket",
        "mesh_controller_heartbeats_ingested_total",
        "mesh_controller_policy_breaches_total",
    } <= names
    latency = by_title["Kill → acknowledged latency"]
    assert all("histogram_quantile" in e for e in latency) and len(latency) == 3

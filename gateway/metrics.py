"""Prometheus metrics of the gateway, read from its counters and kill tracker at scrape time."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.context import Gateway
from mesh.errors import MeshError

__all__ = ["metrics_route", "registry_for"]

_STATES = ("serving", "syncing", "fail_closed")


class _Collector(Collector):
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw

    def collect(self) -> Iterable[Metric]:
        gw, c = self.gw, self.gw.counters
        yield CounterMetricFamily("mesh_gateway_requests_proxied", "Requests proxied", value=c.proxied)
        yield CounterMetricFamily(
            "mesh_gateway_requests_refused", "Requests refused: a kill in force", value=c.refused
        )
        rejected = CounterMetricFamily(
            "mesh_gateway_requests_rejected", "Requests rejected, by reason", labels=["reason"]
        )
        for reason, n in sorted(c.rejected.items()):  # a fixed set of kinds (gateway/errors.py)
            rejected.add_metric([reason], n)
        yield rejected
        yield CounterMetricFamily(
            "mesh_gateway_upstream_errors", "Upstream calls that failed", value=c.upstream_errors
        )
        yield GaugeMetricFamily("mesh_gateway_streams_open", "Streams open", value=len(gw.streams))
        yield GaugeMetricFamily("mesh_gateway_tunnels_open", "Egress tunnels open", value=gw.open_tunnels())
        health = gw.tracker.health()
        state = GaugeMetricFamily("mesh_gateway_state", "1 for the gateway's state", labels=["state"])
        for name in _STATES:
            state.add_metric([name], 1 if health["state"] == name else 0)
        yield state
        yield GaugeMetricFamily(
            "mesh_gateway_kill_records_in_force",
            "Kill records the gateway enforces",
            value=health["kill_records_in_force"],
        )
        yield CounterMetricFamily(
            "mesh_gateway_malformed_control_messages",
            "Control messages ignored as malformed",
            value=health["malformed_control_messages"],
        )
        conn = gw.tracker.conn
        yield GaugeMetricFamily(
            "mesh_gateway_nats_connected", "1 while connected to NATS", value=1 if conn.is_connected else 0
        )
        reconnects = 0
        with contextlib.suppress(MeshError):  # not connected yet, or closed: a null object that raises
            reconnects = int(conn.nc.stats.get("reconnects", 0))
        yield CounterMetricFamily("mesh_gateway_nats_reconnects", "Reconnects to NATS", value=reconnects)


def registry_for(gw: Gateway) -> CollectorRegistry:
    """A registry of this gateway's own (tests run several gateways in one process)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(gw))
    ProcessCollector(registry=registry)
    return registry


def metrics_route(gw: Gateway) -> Route:
    """``GET /metrics`` in the Prometheus text format."""
    registry = registry_for(gw)

    async def metrics(_request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return Route("/metrics", metrics, methods=["GET"])

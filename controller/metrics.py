"""Prometheus metrics of the controller: counters and fleet read at scrape time, so ingest pays nothing."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Protocol

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client import Counter as PromCounter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from controller.metrics_kills import ACTOR_KINDS, KillClock
from controller.state import Fleet, Transition
from controller.stats import Stats
from mesh.errors import MeshError
from mesh.protocol.models import Status
from mesh.transport.connection import Connection

__all__ = ["KILL_BUCKETS", "OTHER", "ControllerMetrics", "MetricsSource", "fleet_series"]

#: Seconds; a kill usually lands in milliseconds, a safe point may be as far as the grace (10 s).
KILL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: The ``org``/``env``/``agent`` labels of the agents beyond ``max_agents``, summed together.
OTHER = "_other"


class MetricsSource(Protocol):
    """What the collector reads from the controller (runner.Controller)."""

    @property
    def role(self) -> str: ...
    @property
    def fleet(self) -> Fleet: ...
    @property
    def stats(self) -> Stats: ...
    @property
    def conn(self) -> Connection | None: ...


def _split(uri: str) -> tuple[str, str, str]:
    parts = uri.removeprefix("agent://").split("/")
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 else (OTHER, OTHER, OTHER)


def fleet_series(fleet: Fleet, max_agents: int) -> tuple[dict[str, int], dict[tuple[str, ...], int]]:
    """Instances by status, and by (status, org, env, agent) for the ``max_agents`` largest agents.

    The rest are summed under ``_other``: the number of series is bounded by agents x statuses,
    never by instances.
    """
    by_status: Counter[str] = Counter()
    by_agent: Counter[tuple[str, str]] = Counter()
    sizes: Counter[str] = Counter()
    for e in fleet.entries.values():
        status = e.status.value
        by_status[status] += 1
        by_agent[(status, e.agent_uri)] += 1
        sizes[e.agent_uri] += 1
    kept = {uri for uri, _ in sizes.most_common(max_agents)}
    series: Counter[tuple[str, ...]] = Counter()
    for (status, uri), n in by_agent.items():
        labels = _split(uri) if uri in kept else (OTHER, OTHER, OTHER)
        series[(status, *labels)] += n
    return {s.value: by_status.get(s.value, 0) for s in Status}, dict(series)


class _Collector(Collector):
    def __init__(self, source: MetricsSource, metrics: ControllerMetrics) -> None:
        self.source = source
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        src = self.source
        role = GaugeMetricFamily("mesh_controller_role", "1 for this controller's role", labels=["role"])
        role.add_metric([src.role], 1)
        yield role
        yield from self._fleet(src)
        yield from self._counters(src.stats)
        yield from self._nats(src.conn)

    def _fleet(self, src: MetricsSource) -> Iterable[Metric]:
        totals = GaugeMetricFamily(
            "mesh_fleet_instances", "Instances by status (active controller only)", labels=["status"]
        )
        per_agent = GaugeMetricFamily(
            "mesh_instances",
            "Instances by status and agent (the largest agents; the rest under _other)",
            labels=["status", "org", "env", "agent"],
        )
        if src.role == "active":
            by_status, series = fleet_series(src.fleet, self.metrics.max_agents)
            for status, n in by_status.items():
                totals.add_metric([status], n)
            for labels, n in sorted(series.items()):
                per_agent.add_metric(list(labels), n)
        yield totals
        yield per_agent

    def _counters(self, st: Stats) -> Iterable[Metric]:
        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            return CounterMetricFamily(name, doc, value=value)

        yield counter("mesh_controller_messages_received", "Heartbeat messages received", st.received)
        yield counter("mesh_controller_heartbeats_ingested", "Valid heartbeats applied", st.heartbeats)
        yield counter(
            "mesh_controller_heartbeats_dropped", "Heartbeats dropped as a slow consumer", st.dropped
        )
        bad = CounterMetricFamily(
            "mesh_controller_malformed_messages", "Refused messages by reason", labels=["reason"]
        )
        for reason, n in sorted((st.bad + self.metrics.malformed).items()):
            bad.add_metric([reason], n)
        yield bad
        transitions = CounterMetricFamily(
            "mesh_controller_transitions", "Status transitions by new status", labels=["to"]
        )
        for s in Status:
            transitions.add_metric([s.value], self.metrics.transitions.get(s.value, 0))
        yield transitions
        yield counter("mesh_controller_status_writes", "Instance records written", st.writes)
        yield counter("mesh_controller_status_write_errors", "Instance record writes failed", st.write_errors)
        yield counter("mesh_controller_audit_events_written", "Audit events written", st.audit_events)
        yield counter("mesh_controller_lifecycle_events", "Lifecycle events applied", st.lifecycle_events)
        yield GaugeMetricFamily("mesh_controller_policies", "Policies loaded", value=st.policies)
        yield counter(
            "mesh_controller_policy_evaluations", "Policy x agent evaluations", st.policy_evaluations
        )
        yield counter("mesh_controller_policy_breaches", "Evaluations finding a breach", st.policy_breaches)
        actions = CounterMetricFamily(
            "mesh_controller_policy_actions", "Breaches acted on, by action", labels=["action"]
        )
        actions.add_metric(["kill"], st.policy_kills)
        actions.add_metric(["alert"], st.policy_alerts)
        actions.add_metric(["dry_run"], st.policy_dry_runs)
        yield actions
        leases = CounterMetricFamily(
            "mesh_controller_quota_lease_requests", "Quota lease requests by outcome", labels=["outcome"]
        )
        leases.add_metric(["granted"], st.lease_grants)
        leases.add_metric(["denied"], st.lease_denials)
        leases.add_metric(["conflict"], st.lease_conflicts)
        leases.add_metric(["bad"], st.bad_lease_requests)
        yield leases

    def _nats(self, conn: Connection | None) -> Iterable[Metric]:
        connected = conn is not None and conn.is_connected
        yield GaugeMetricFamily(
            "mesh_controller_nats_connected", "1 while connected to NATS", value=1 if connected else 0
        )
        reconnects = 0
        if conn is not None:
            # Before connect() and after close() the client is a null object that raises.
            with contextlib.suppress(MeshError):
                reconnects = int(conn.nc.stats.get("reconnects", 0))
        yield CounterMetricFamily("mesh_controller_nats_reconnects", "Reconnects to NATS", value=reconnects)


class ControllerMetrics:
    """One registry per controller (several may run in one process, as in the tests)."""

    def __init__(self, source: MetricsSource, *, max_agents: int = 500) -> None:
        self.max_agents = max_agents
        self.registry = CollectorRegistry(auto_describe=False)
        #: Status transitions by new status (fed by :meth:`counting`).
        self.transitions: Counter[str] = Counter()
        #: Malformed audit events seen by the kill/resume observer, by reason.
        self.malformed: Counter[str] = Counter()
        self.kill_clock = KillClock()
        self.kills = PromCounter(
            "mesh_kills", "Kill commands seen, by actor kind", ["actor_kind"], registry=self.registry
        )
        self.resumes = PromCounter(
            "mesh_resumes", "Resume commands seen, by actor kind", ["actor_kind"], registry=self.registry
        )
        self.kill_latency = Histogram(
            "mesh_kill_ack_latency_seconds",
            "From a kill event to each instance's halted event answering it",
            ["actor_kind"],
            buckets=KILL_BUCKETS,
            registry=self.registry,
        )
        for kind in ACTOR_KINDS:  # every series exists from the start, at 0
            self.kills.labels(kind)
            self.resumes.labels(kind)
            self.kill_latency.labels(kind)
        self.registry.register(_Collector(source, self))
        ProcessCollector(registry=self.registry)

    def counting(self, submit: Callable[[Transition], None]) -> Callable[[Transition], None]:
        """``submit``, counting each transition first (transitions are rare next to heartbeats)."""
        transitions = self.transitions

        def counted(t: Transition) -> None:
            transitions[t.new.value] += 1
            submit(t)

        return counted

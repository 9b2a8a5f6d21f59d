"""The controller process: lease, then (while active) heartbeats, quota leases, lifecycle, sweep, writer."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import structlog

from controller.discovery import controller_service
from controller.ingest import Ingest
from controller.lease import Lease
from controller.lifecycle import LifecycleFeed
from controller.metrics import ControllerMetrics
from controller.metrics_audit import AuditObserver
from controller.metrics_http import MetricsServer
from controller.options import ControllerOptions
from controller.policies import PolicyEngine
from controller.quota import QuotaService
from controller.restore import restore
from controller.state import Fleet, Policy
from controller.stats import Stats
from controller.sweep import sweep_loop
from controller.writer import Writer
from mesh.errors import NotProvisioned, PermissionDenied
from mesh.runtime.aio import stop_tasks, wait_for
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection, translate_error
from mesh.transport.kvops import open_bucket
from mesh.transport.micro import SnapshotService
from mesh.transport.natserrors import slow_consumer_sid
from mesh.transport.natstypes import KeyValue, Subscription
from mesh.transport.provision import ProvisionOptions, provision

__all__ = ["Controller"]

log = structlog.get_logger("controller")


async def _wait(event: asyncio.Event, timeout: float) -> bool:
    """Wait for ``event`` at most ``timeout`` seconds; True if it is set."""
    with contextlib.suppress(TimeoutError):
        await wait_for(event.wait(), timeout)
    return event.is_set()


class Controller:
    """One controller process. Several may run: the lease decides which one is active."""

    def __init__(self, settings: Settings, options: ControllerOptions | None = None) -> None:
        self.settings = settings
        self.options = options or ControllerOptions()
        o = self.options
        self.policy = Policy(
            lost_after=o.lost_after,
            stale_intervals=o.stale_intervals,
            refresh_every=o.refresh_every,
            retention=o.retention,
        )
        self.stats = Stats()
        self.fleet = Fleet(self.policy)
        self.role = "starting"
        self.lease: Lease | None = None
        self.writer: Writer | None = None
        #: The policy engine while active (tests and the service API look at what it has loaded).
        self.engine: PolicyEngine | None = None
        self._hb_sub: Subscription | None = None
        self._quota_sub: Subscription | None = None
        #: The NATS connection while running (the metrics read its state).
        self.conn: Connection | None = None
        #: Prometheus metrics, when ``options.metrics_port`` is set; the bound port once serving.
        self.metrics: ControllerMetrics | None = None
        self.metrics_port: int | None = None

    @property
    def ingesting(self) -> bool:
        """Active and subscribed to heartbeats."""
        return self.role == "active" and self._hb_sub is not None

    # -- observability --------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        counts = self.fleet.counts() if self.role == "active" else {}
        lease = self.lease
        return {
            "prefix": self.settings.prefix,
            "holder": self.options.holder,
            "role": self.role,
            "lease_holder": lease.current_holder if lease else None,
            "instances": counts,
            "instances_total": sum(counts.values()),
            "pending_audit_events": self.writer.pending_events if self.writer else 0,
            **self.stats.as_dict(),
        }

    async def _on_error(self, exc: Exception) -> None:
        sid = slow_consumer_sid(exc)
        sub = self._hb_sub
        if sid is not None and sub is not None and sid == sub._id:
            self.stats.dropped += 1

    # -- lifecycle ------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        o = self.options
        conn = Connection(self.settings, name=f"mesh-controller {o.holder}", on_error=self._on_error)
        await conn.connect()
        self.conn = conn
        service: SnapshotService | None = None
        http: MetricsServer | None = None
        ticker = asyncio.create_task(self._tick(stop))
        try:
            http = await self._serve_metrics()
            ns = conn.ns
            await _ensure_provisioned(conn)
            try:
                leases_kv = await conn.js.key_value(ns.leases_bucket)
                instances_kv = await conn.js.key_value(ns.instances_bucket)
            except Exception as exc:
                raise translate_error(exc, "open the controller's buckets", subject=ns.leases_bucket) from exc
            self.lease = Lease(leases_kv, o.holder, o.lease_ttl)
            service = controller_service(conn.nc, ns.controller_service, ns.prefix, self.snapshot)
            await service.start()
            log.info("controller started", holder=o.holder, prefix=ns.prefix, lease_ttl=o.lease_ttl)
            while not stop.is_set():
                if await self.lease.step():
                    await self._active(conn, instances_kv, stop)
                    continue
                if self.role != "standby":
                    log.info("standing by", lease_holder=self.lease.current_holder)
                self.role = "standby"
                await _wait(stop, o.lease_ttl / 3)
        finally:
            ticker.cancel()
            if self.lease is not None:
                await self.lease.release()
            if service is not None:
                await service.stop()
            if http is not None:
                await http.stop()
            await conn.close()
            self.role = "stopped"
            log.info("controller stopped", holder=o.holder)

    async def _serve_metrics(self) -> MetricsServer | None:
        o = self.options
        if o.metrics_port is None:
            return None
        self.metrics = ControllerMetrics(self, max_agents=o.metrics_max_agents)
        http = MetricsServer(self.metrics.registry, o.metrics_host, o.metrics_port)
        try:
            self.metrics_port = await http.start()
        except OSError as exc:  # metrics are not worth refusing to control the fleet
            log.error(
                "metrics disabled: cannot listen",
                host=o.metrics_host,
                port=o.metrics_port,
                error=str(exc),
                fix="free the port or pass another --metrics-port (--no-metrics turns them off)",
            )
            return None
        return http

    async def _tick(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.stats.tick(time.time())
            await asyncio.sleep(1.0)

    async def _open_buckets(self, conn: Connection, stop: asyncio.Event) -> tuple[KeyValue, KeyValue] | None:
        """The control and quota buckets. A missing one is an error; a timeout (a cluster electing
        stream leaders after a node died) is logged and None returned, for the lease loop to try
        again: the controller used to exit on it."""
        ns = conn.ns
        try:
            return await open_bucket(conn.js, ns.control_bucket), await open_bucket(conn.js, ns.quota_bucket)
        except NotProvisioned:
            raise
        except Exception as exc:
            log.warning("could not open the control or quota bucket, will retry", error=str(exc) or repr(exc))
            await _wait(stop, self.options.lease_ttl / 3)
            return None

    async def _active(self, conn: Connection, kv: KeyValue, stop: asyncio.Event) -> None:
        """Act as the active controller until the lease is lost or ``stop`` is set."""
        o = self.options
        lease = self.lease
        assert lease is not None
        self.role = "active"
        fleet = self.fleet = Fleet(self.policy)
        try:
            loaded = await restore(conn, fleet)
        except Exception as exc:
            log.warning("could not read the instances KV, will retry", error=str(exc) or type(exc).__name__)
            await _wait(stop, o.lease_ttl / 3)
            return
        buckets = await self._open_buckets(conn, stop)
        if buckets is None:
            return
        control_kv, quota_kv = buckets
        writer = self.writer = Writer(
            conn,
            kv,
            fleet,
            self.stats,
            actor="mesh-controller",
            may_write=lambda: lease.held,
            flush_every=o.flush_every,
        )
        policies = PolicyEngine(
            conn,
            control_kv,
            fleet,
            self.stats,
            may_act=lambda: lease.held,
            reload_every=o.policy_reload_every,
            tick_every=o.policy_tick_every,
        )
        leases = QuotaService(
            conn.ns,
            quota_kv,
            policies.book,
            policies.enforcer,
            self.stats,
            live=policies.live_instances,
            observed=policies.observed,
            may_act=lambda: lease.held,
        )
        self.engine = policies
        metrics = self.metrics
        submit = metrics.counting(writer.submit) if metrics is not None else writer.submit
        ingest = Ingest(
            conn.ns,
            fleet,
            self.stats,
            submit,
            max_bytes=o.max_heartbeat_bytes,
            observer=policies.on_heartbeat,
        )
        self._hb_sub = await conn.nc.subscribe(
            conn.ns.heartbeat_wildcard,
            cb=ingest.on_message,
            pending_msgs_limit=o.pending_msgs_limit,
            pending_bytes_limit=o.pending_bytes_limit,
        )
        self._quota_sub = await conn.nc.subscribe(conn.ns.quota_wildcard, cb=leases.on_message)
        feed = LifecycleFeed(conn, fleet, self.stats, submit, writer.flush, durable=o.lifecycle_durable)
        observer = AuditObserver(conn, metrics) if metrics is not None else None
        if observer is not None:
            await observer.start()
        warmup = o.warmup if o.warmup is not None else min(o.lost_after, fleet.longest_interval()) + 0.5
        log.info("active", holder=o.holder, restored=loaded, first_sweep_in=round(warmup, 2))
        tasks = [
            asyncio.create_task(writer.run(), name="writer"),
            asyncio.create_task(policies.run(), name="policies"),
            asyncio.create_task(feed.run(), name="lifecycle"),
            asyncio.create_task(
                sweep_loop(fleet, submit, writer.wake, every=o.sweep_every, warmup=warmup),
                name="sweep",
            ),
        ]
        try:
            while not await _wait(stop, o.lease_ttl / 3):
                if not await lease.step():
                    log.warning("lease lost, standing by", lease_holder=lease.current_holder)
                    break
                for task in tasks:
                    if task.done() and not task.cancelled() and task.exception() is not None:
                        raise RuntimeError(f"controller task {task.get_name()} died") from task.exception()
        finally:
            for sub in (self._hb_sub, self._quota_sub):
                if sub is not None:
                    with contextlib.suppress(Exception):
                        await sub.unsubscribe()
            self._hb_sub = self._quota_sub = None
            if observer is not None:
                await observer.stop()
            # Bounded, and re-cancelling: a task whose cancel a library swallowed is asked again.
            stuck = await stop_tasks(tasks, timeout=10.0)
            if stuck:
                log.warning("controller tasks did not stop", tasks=sorted(t.get_name() for t in stuck))
            if lease.held:
                with contextlib.suppress(Exception):
                    await wait_for(writer.flush(refresh=True), 5.0)
            self.writer = None


async def _ensure_provisioned(conn: Connection) -> None:
    """Create missing buckets and the audit stream, so a fresh cluster needs only the controller.

    A controller without the right to create them (the ``controller`` role) relies on
    ``mesh init`` having run: the refusal is logged, and opening the buckets then says what's missing.
    What ``mesh init`` chose (``--replicas 3``, ``--audit-days``) is adopted, not a conflict.
    """
    try:
        await provision(conn.js, conn.ns, ProvisionOptions(adopt_existing=True))
    except PermissionDenied as exc:
        log.info("not provisioning (no permission); expecting `mesh init` to have run", error=str(exc))

"""Tunables of the controller: detection thresholds, write coalescing, retention and the lease."""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field

__all__ = ["ControllerOptions", "default_holder"]


def default_holder() -> str:
    """A lease holder id that is unique per process: ``host-pid-random``."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True, slots=True)
class ControllerOptions:
    #: An instance is ``lost`` after this long without a heartbeat.
    lost_after: float = 30.0
    #: An instance is ``stale`` after this many of its own heartbeat intervals without one.
    stale_intervals: float = 3.0
    #: ``last_seen`` is written to the KV at most this often per instance (status changes: at once).
    refresh_every: float = 5.0
    #: Records of instances gone for longer than this are deleted from the instances KV.
    retention: float = 24 * 3600.0
    #: The leader lease's time to live; the holder renews it every ``lease_ttl / 3``.
    lease_ttl: float = 10.0
    #: How often the sweep for stale, lost and expired instances runs.
    sweep_every: float = 1.0
    #: Longest wait between write flushes when nothing urgent happened.
    flush_every: float = 0.25
    #: After taking over, wait this long for heartbeats before the first sweep (None: the
    #: longest heartbeat interval known, capped at ``lost_after``).
    warmup: float | None = None
    #: Heartbeats larger than this are refused as oversized.
    max_heartbeat_bytes: int = 64 * 1024
    #: Pending limits of the heartbeat subscription (messages are dropped beyond them).
    pending_msgs_limit: int = 1_000_000
    pending_bytes_limit: int = 512 * 1024 * 1024
    #: Id of this controller in the lease; unique per process by default.
    holder: str = field(default_factory=default_holder)
    #: How often the policies bucket is re-read (a KV watch would need its own health check).
    policy_reload_every: float = 1.0
    #: How often every agent a policy covers is evaluated, for limits that move with time alone.
    policy_tick_every: float = 1.0
    #: Name of the durable consumer on the audit stream that feeds lifecycle events.
    lifecycle_durable: str = "mesh-controller"
    #: Serve Prometheus metrics on ``http://metrics_host:metrics_port/metrics`` (None: off; 0: any
    #: free port). ``mesh controller`` turns it on at 9464; see docs/observability.md.
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    #: Agents with series of their own in ``mesh_instances``; the others are summed under ``_other``.
    metrics_max_agents: int = 500

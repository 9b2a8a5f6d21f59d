"""Idempotent provisioning of the mesh's KV buckets and audit stream, with explicit configs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import nats.js.errors
import structlog
from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    KeyValueConfig,
    RePublish,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from mesh.errors import ProvisioningConflict
from mesh.protocol.subjects import Namespace
from mesh.transport.connection import translate_error

__all__ = ["ProvisionOptions", "ProvisionResult", "audit_stream_config", "bucket_configs", "provision"]

log = structlog.get_logger("mesh.provision")

DAY = 86400.0


@dataclass(frozen=True, slots=True)
class ProvisionOptions:
    replicas: int = 1
    audit_max_age: float = 90 * DAY
    audit_duplicate_window: float = 120.0
    control_history: int = 16
    checkpoint_history: int = 4
    max_checkpoint_bytes: int = 1024 * 1024
    #: Keep an existing asset whose operator-chosen settings (``mesh init --replicas/--audit-days``)
    #: differ from these options, instead of raising: the controller runs with the defaults and must
    #: not refuse a mesh that ``mesh init --replicas 3`` made. Any other difference still conflicts.
    adopt_existing: bool = False


@dataclass(slots=True)
class ProvisionResult:
    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)


def bucket_configs(ns: Namespace, opts: ProvisionOptions) -> list[KeyValueConfig]:
    """Buckets: control (republished), instances, checkpoints, leases, policies, quota, gateway keys."""
    return [
        KeyValueConfig(
            bucket=ns.control_bucket,
            description="agent-mesh kill records (source of truth); republished to the control subjects",
            history=opts.control_history,
            storage=StorageType.FILE,
            replicas=opts.replicas,
            max_value_size=64 * 1024,
            republish=RePublish(src=ns.control_republish_source, dest=ns.control_republish_dest),
            direct=True,
        ),
        KeyValueConfig(
            bucket=ns.instances_bucket,
            description="agent-mesh live instance status, written by the controller",
            history=1,
            storage=StorageType.FILE,
            replicas=opts.replicas,
            max_value_size=256 * 1024,
            direct=True,
        ),
        KeyValueConfig(
            bucket=ns.checkpoints_bucket,
            description="agent-mesh checkpoints, one key per instance",
            history=opts.checkpoint_history,
            storage=StorageType.FILE,
            replicas=opts.replicas,
            max_value_size=opts.max_checkpoint_bytes,
            direct=True,
        ),
        KeyValueConfig(
            bucket=ns.leases_bucket,
            description="agent-mesh controller leader lease (expiry is in the value, taken by CAS)",
            history=1,
            storage=StorageType.FILE,
            replicas=opts.replicas,
            max_value_size=4096,
            direct=True,
        ),
        KeyValueConfig(
            bucket=ns.policies_bucket,
            description="agent-mesh policies: limits that kill automatically, one key per policy name",
            history=8,
            storage=StorageType.FILE,
            replicas=opts.replicas,
            max_value_size=64 * 1024,
            direct=True,
        ),
        KeyValueConfig(
            bucket=ns.quota_bucket,
            description="agent-mesh quota leases: per budget, the grants made (written by CAS on revision)",
            history=1,
            storage=StorageType.FILE,
            replicas=opts.replicas,
            max_value_size=1024 * 1024,
            direct=True,
        ),
        KeyValueConfig(
            bucket=ns.gateway_keys_bucket,
            description="agent-mesh gateway virtual keys, by sha256; republished so revocation is immediate",
            history=4,
            storage=StorageType.FILE,
            replicas=opts.replicas,
            max_value_size=16 * 1024,
            republish=RePublish(src=ns.gateway_keys_republish_source, dest=ns.gateway_keys_republish_dest),
            direct=True,
        ),
    ]


def audit_stream_config(ns: Namespace, opts: ProvisionOptions) -> StreamConfig:
    """The append-only audit stream: nobody may delete or purge it through the API."""
    return StreamConfig(
        name=ns.audit_stream,
        description="agent-mesh audit log: every command and transition",
        subjects=[ns.audit_wildcard],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        num_replicas=opts.replicas,
        max_age=opts.audit_max_age,
        duplicate_window=opts.audit_duplicate_window,
        deny_delete=True,
        deny_purge=True,
        discard=DiscardPolicy.OLD,
        max_msg_size=256 * 1024,
        allow_direct=True,
    )


def _republish(cfg: StreamConfig) -> tuple[str | None, str | None] | None:
    if cfg.republish is None:
        return None
    return (cfg.republish.src, cfg.republish.dest)


def _essentials(cfg: StreamConfig) -> dict[str, Any]:
    """The fields whose difference would change the mesh's behaviour."""
    return {
        "subjects": sorted(cfg.subjects or []),
        "storage": getattr(cfg.storage, "value", cfg.storage) or "file",
        "replicas": cfg.num_replicas or 1,
        "max_age": round(cfg.max_age or 0.0, 3),
        "history": cfg.max_msgs_per_subject if cfg.max_msgs_per_subject not in (None, 0) else -1,
        "deny_delete": bool(cfg.deny_delete),
        "deny_purge": bool(cfg.deny_purge),
        "republish": _republish(cfg),
        "duplicate_window": round(cfg.duplicate_window or 0.0, 3),
    }


def _kv_stream_config(kv: KeyValueConfig) -> StreamConfig:
    duplicate_window = min(120.0, kv.ttl) if kv.ttl else 120.0
    return StreamConfig(
        name=f"KV_{kv.bucket}",
        subjects=[f"$KV.{kv.bucket}.>"],
        storage=kv.storage,
        num_replicas=kv.replicas,
        max_age=kv.ttl or 0.0,
        max_msgs_per_subject=kv.history,
        deny_delete=True,
        deny_purge=False,
        republish=kv.republish,
        duplicate_window=duplicate_window,
    )


#: The fields ``mesh init`` lets an operator choose; ``adopt_existing`` accepts what is there.
_OPERATOR_CHOSEN = frozenset({"replicas", "max_age"})


def _differences(have: StreamConfig, want: StreamConfig) -> dict[str, tuple[Any, Any]]:
    h, w = _essentials(have), _essentials(want)
    return {k: (h[k], w[k]) for k in w if h[k] != w[k]}


def _conflicts(name: str, have: StreamConfig, want: StreamConfig, opts: ProvisionOptions) -> None:
    """Raise ProvisioningConflict on a difference, except adopted operator choices (logged)."""
    diff = _differences(have, want)
    if opts.adopt_existing:
        adopted = {k: v for k, v in diff.items() if k in _OPERATOR_CHOSEN}
        if adopted:
            log.info("adopting existing settings", asset=name, differences=adopted)
        diff = {k: v for k, v in diff.items() if k not in _OPERATOR_CHOSEN}
    if diff:
        raise ProvisioningConflict(name, diff)


async def _existing(js: JetStreamContext, stream: str) -> StreamConfig | None:
    try:
        info = await js.stream_info(stream)
    except nats.js.errors.NotFoundError:
        return None
    return info.config


async def provision(
    js: JetStreamContext, ns: Namespace, opts: ProvisionOptions | None = None
) -> ProvisionResult:
    """Create what is missing; leave what matches; raise ProvisioningConflict on a mismatch.

    Running it twice changes nothing. A conflicting config is reported, never overwritten.
    """
    opts = opts or ProvisionOptions()
    result = ProvisionResult()
    try:
        for kv in bucket_configs(ns, opts):
            stream = f"KV_{kv.bucket}"
            have = await _existing(js, stream)
            if have is None:
                await js.create_key_value(kv)
                result.created.append(kv.bucket)
                continue
            _conflicts(f"bucket {kv.bucket}", have, _kv_stream_config(kv), opts)
            result.existing.append(kv.bucket)

        audit = audit_stream_config(ns, opts)
        assert audit.name is not None
        have = await _existing(js, audit.name)
        if have is None:
            await js.add_stream(audit)
            result.created.append(audit.name)
        else:
            _conflicts(f"stream {audit.name}", have, audit, opts)
            result.existing.append(audit.name)
    except ProvisioningConflict:
        raise
    except Exception as exc:
        raise translate_error(exc, "provision JetStream buckets and streams") from exc
    if result.created:
        log.info("provisioned", created=result.created, existing=result.existing)
    return result

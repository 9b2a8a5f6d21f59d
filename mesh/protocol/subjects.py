"""Pure builders for every NATS subject, KV key, bucket and stream name the mesh uses.

``_`` stands for ``*`` in keys and subjects, because KV keys cannot hold ``*``; a real
segment can never be ``_`` since segments start with a letter or digit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import product

from mesh.errors import ConfigError, InvalidTarget
from mesh.protocol.target import (
    WILDCARD,
    AgentURI,
    Target,
    parse_agent_uri,
    parse_target,
    validate_instance,
)

__all__ = ["ANY", "DEFAULT_PREFIX", "Namespace", "key_to_target", "target_to_key"]

DEFAULT_PREFIX = "mesh"
ANY = "_"
_PREFIX = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,31}")


def _tok(segment: str) -> str:
    return ANY if segment == WILDCARD else segment


def _untok(token: str) -> str:
    return WILDCARD if token == ANY else token


def target_to_key(target: Target) -> str:
    """The control KV key of a target: ``ORG.ENV.NAME`` or ``ORG.ENV.NAME.INSTANCE``."""
    base = ".".join(_tok(s) for s in target.tokens)
    return f"{base}.{target.instance}" if target.instance else base


def key_to_target(key: str) -> Target:
    """Inverse of :func:`target_to_key`; raises :class:`InvalidTarget` for a foreign key."""
    parts = key.split(".")
    if len(parts) not in (3, 4):
        raise InvalidTarget(key, "key", "expected ORG.ENV.NAME or ORG.ENV.NAME.INSTANCE")
    uri = "agent://" + "/".join(_untok(p) for p in parts[:3])
    return parse_target(uri, parts[3] if len(parts) == 4 else None)


@dataclass(frozen=True, slots=True)
class Namespace:
    """All names under one prefix (``MESH_PREFIX``, default ``mesh``).

    Buckets and the stream are named after the prefix too, so several meshes (or test runs)
    can share one server without seeing each other.
    """

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if not _PREFIX.fullmatch(self.prefix):
            raise ConfigError(
                f"invalid MESH_PREFIX {self.prefix!r}: use a letter then up to 31 letters, digits, '_' or '-'"
            )

    # -- buckets and stream -------------------------------------------------------------------
    @property
    def control_bucket(self) -> str:
        return f"{self.prefix}_control"

    @property
    def instances_bucket(self) -> str:
        return f"{self.prefix}_instances"

    @property
    def checkpoints_bucket(self) -> str:
        return f"{self.prefix}_checkpoints"

    @property
    def leases_bucket(self) -> str:
        return f"{self.prefix}_leases"

    @property
    def policies_bucket(self) -> str:
        return f"{self.prefix}_policies"

    @property
    def quota_bucket(self) -> str:
        return f"{self.prefix}_quota"

    @property
    def gateway_keys_bucket(self) -> str:
        """The gateway's virtual keys, stored by hash (never the key itself)."""
        return f"{self.prefix}_gateway_keys"

    @property
    def gateway_keys_republish_source(self) -> str:
        return f"$KV.{self.gateway_keys_bucket}.>"

    @property
    def gateway_keys_republish_dest(self) -> str:
        """Where key writes are republished, so gateways drop a revoked key from their cache at once."""
        return f"{self.prefix}.gwkey.>"

    @property
    def audit_stream(self) -> str:
        return f"{self.prefix.upper().replace('-', '_')}_AUDIT"

    # -- heartbeats ---------------------------------------------------------------------------
    def heartbeat_subject(self, agent: AgentURI, instance: str) -> str:
        return f"{self.prefix}.hb.{agent.org}.{agent.env}.{agent.name}.{instance}"

    @property
    def heartbeat_wildcard(self) -> str:
        return f"{self.prefix}.hb.>"

    def parse_heartbeat_subject(self, subject: str) -> tuple[AgentURI, str]:
        """``mesh.hb.ORG.ENV.NAME.INSTANCE`` -> (uri, instance); InvalidTarget otherwise."""
        parts = subject.split(".")
        if len(parts) != 6 or parts[0] != self.prefix or parts[1] != "hb":
            raise InvalidTarget(subject, "subject", f"not a {self.prefix}.hb.ORG.ENV.NAME.INSTANCE subject")
        agent = parse_agent_uri("agent://" + "/".join(parts[2:5]))
        return agent, validate_instance(parts[5])

    # -- control ------------------------------------------------------------------------------
    def control_key(self, target: Target) -> str:
        return target_to_key(target)

    def control_subject(self, key: str) -> str:
        """Where nats-server republishes writes to the control bucket's ``key``."""
        return f"{self.prefix}.ctl.{key}"

    @property
    def control_republish_source(self) -> str:
        return f"$KV.{self.control_bucket}.>"

    @property
    def control_republish_dest(self) -> str:
        return f"{self.prefix}.ctl.>"

    def control_key_from_subject(self, subject: str) -> str:
        head = f"{self.prefix}.ctl."
        if not subject.startswith(head):
            raise InvalidTarget(subject, "subject", f"not under {head}")
        return subject[len(head) :]

    def matching_control_keys(self, agent: AgentURI, instance: str) -> list[str]:
        """Every control key that can match this instance: 8 patterns plus its own key."""
        keys = [".".join(combo) for combo in product((agent.org, ANY), (agent.env, ANY), (agent.name, ANY))]
        keys.append(f"{agent.org}.{agent.env}.{agent.name}.{instance}")
        return keys

    def instance_control_subjects(self, agent: AgentURI, instance: str) -> list[str]:
        """The exact subjects one instance subscribes to, so that a kill reaches it."""
        return [self.control_subject(k) for k in self.matching_control_keys(agent, instance)]

    # -- status and checkpoints -----------------------------------------------------------------
    def instance_key(self, agent: AgentURI, instance: str) -> str:
        """Key of an instance in the instances and checkpoints buckets."""
        return f"{agent.org}.{agent.env}.{agent.name}.{instance}"

    def instance_key_filter(self, target: Target) -> str:
        """A KV key filter (NATS wildcards) for the instances a target covers."""
        parts = [s if s != WILDCARD else "*" for s in target.tokens]
        parts.append(target.instance or "*")
        return ".".join(parts)

    # -- audit -----------------------------------------------------------------------------------
    def audit_subject(self, event_type: str, target: Target | AgentURI, instance: str | None = None) -> str:
        """``mesh.audit.ORG.ENV.NAME.INSTANCE.TYPE``; ``_`` for wildcards and no instance."""
        tokens = [_tok(s) for s in target.tokens]
        inst = instance or (target.instance if isinstance(target, Target) else None) or ANY
        return f"{self.prefix}.audit.{'.'.join(tokens)}.{inst}.{event_type}"

    @property
    def audit_wildcard(self) -> str:
        return f"{self.prefix}.audit.>"

    def audit_filter(self, event_type: str = "*", target: Target | None = None) -> str:
        """A subject filter on the audit stream for events about agents under ``target``.

        Only events recorded for concrete agents match a pattern filter segment by segment;
        kill/resume commands recorded with ``_`` segments need :meth:`Target.overlaps`.
        """
        if target is None:
            return f"{self.prefix}.audit.*.*.*.*.{event_type}"
        tokens = ["*" if s == WILDCARD else s for s in target.tokens]
        inst = target.instance or "*"
        return f"{self.prefix}.audit.{'.'.join(tokens)}.{inst}.{event_type}"

    # -- quota leases -----------------------------------------------------------------------------
    def quota_subject(self, agent: AgentURI, instance: str) -> str:
        """Where an instance asks the controller for a quota lease (request/reply)."""
        return f"{self.prefix}.quota.{agent.org}.{agent.env}.{agent.name}.{instance}"

    @property
    def quota_wildcard(self) -> str:
        return f"{self.prefix}.quota.>"

    def parse_quota_subject(self, subject: str) -> tuple[AgentURI, str]:
        """``mesh.quota.ORG.ENV.NAME.INSTANCE`` -> (uri, instance); InvalidTarget otherwise."""
        parts = subject.split(".")
        if len(parts) != 6 or parts[0] != self.prefix or parts[1] != "quota":
            expected = f"not a {self.prefix}.quota.ORG.ENV.NAME.INSTANCE subject"
            raise InvalidTarget(subject, "subject", expected)
        agent = parse_agent_uri("agent://" + "/".join(parts[2:5]))
        return agent, validate_instance(parts[5])

    def budget_key(self, policy: str, counter: str, window: float | None, agent: AgentURI) -> str:
        """Key of one budget's ledger in the quota bucket: ``POLICY.COUNTER.WINDOW.ORG.ENV.NAME``.

        The window is part of the key, so that one policy may limit a counter per hour and per day.
        """
        span = "total" if window is None else f"{window:g}s".replace(".", "_")
        return f"{policy}.{counter}.{span}.{agent.org}.{agent.env}.{agent.name}"

    # -- service API ----------------------------------------------------------------------------
    @property
    def controller_service(self) -> str:
        return "mesh-controller"

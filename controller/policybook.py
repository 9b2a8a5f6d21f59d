"""The policies in force, re-read from the policies bucket; unreadable ones are counted and logged."""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from pydantic import ValidationError

from controller.stats import RateLimitedLog, Stats
from mesh.errors import MeshError
from mesh.protocol.policy import Policy
from mesh.protocol.target import AgentURI, Target, parse_target
from mesh.transport.connection import Connection
from mesh.transport.kvscan import scan_latest

__all__ = ["LoadedPolicy", "PolicyBook"]

log = structlog.get_logger("controller.policies")


@dataclass(frozen=True, slots=True)
class LoadedPolicy:
    policy: Policy
    target: Target


class PolicyBook:
    """``refresh`` re-lists the bucket (one direct multi-get; an empty bucket is simply empty)."""

    def __init__(self, conn: Connection, stats: Stats) -> None:
        self.conn = conn
        self.stats = stats
        self.policies: dict[str, LoadedPolicy] = {}
        self.loaded_once = False
        self._warn = RateLimitedLog(log, every=30.0)

    async def refresh(self) -> bool:
        """Re-read every policy; False (logged) if the bucket could not be read: keep the old set."""
        try:
            entries = await scan_latest(self.conn, self.conn.ns.policies_bucket, timeout=2.0)
        except MeshError as exc:
            self._warn.warning("could not read policies, keeping the last set", "unreadable", error=str(exc))
            return False
        fresh: dict[str, LoadedPolicy] = {}
        bad = 0
        for key, entry in entries.items():
            try:
                policy = Policy.model_validate_json(entry.value)
                if policy.name != key:
                    raise ValueError(f"stored under {key!r} but named {policy.name!r}")
                target = parse_target(policy.target)
            except (ValidationError, ValueError) as exc:
                bad += 1
                self._warn.warning("ignored a bad policy", f"bad:{key}", key=key, error=str(exc)[:300])
                continue
            fresh[key] = LoadedPolicy(policy, target)
        if set(fresh) != set(self.policies) or not self.loaded_once:
            log.info("policies loaded", names=sorted(fresh), bad=bad)
        self.stats.bad_policies = bad
        self.policies = fresh
        self.loaded_once = True
        return True

    @property
    def window(self) -> float:
        """The largest rate window of any policy."""
        return max(
            (lim.window or 0.0 for lp in self.policies.values() for lim in lp.policy.limits), default=0.0
        )

    def matching(self, agent: AgentURI) -> list[Policy]:
        return [lp.policy for lp in self.policies.values() if lp.target.matches(agent)]

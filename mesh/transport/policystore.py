"""Policies in the policies bucket: one key per policy name; set, list and remove."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from typing import Literal

from pydantic import ValidationError

from mesh.errors import ConfigError, InvalidTarget, MalformedMessage, NotFound, NotProvisioned
from mesh.protocol.codec import decode, encode
from mesh.protocol.policy import Limit, Policy, parse_limit
from mesh.protocol.quota import Ledger
from mesh.protocol.target import parse_target
from mesh.transport.connection import Connection
from mesh.transport.kvscan import delete_key, put_key, scan_latest

__all__ = ["build_policy", "list_policies", "read_ledgers", "remove_policy", "set_policy"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def build_policy(
    name: str,
    target: str,
    limits: Sequence[str | Limit],
    *,
    action: str = "kill",
    grace: float = 10.0,
    created_by: str = "unknown",
    dry_run: bool = False,
    on_unreachable: str = "wait",
) -> Policy:
    """Validate everything (ConfigError/InvalidTarget naming the bad part) before anything is written."""
    parsed = [lim if isinstance(lim, Limit) else parse_limit(lim) for lim in limits]
    if not parsed:
        raise ConfigError("a policy needs at least one limit (e.g. --limit 'emails<=10000/1h')")
    if action not in ("kill", "pause", "alert"):
        raise ConfigError(f"invalid action {action!r}: use 'kill', 'pause' or 'alert'")
    if on_unreachable not in ("wait", "proceed"):
        raise ConfigError(
            f"invalid on_unreachable {on_unreachable!r}: use 'wait' (fail-closed) or 'proceed' (fail-open)"
        )
    tgt = parse_target(target)
    if tgt.instance is not None:
        raise InvalidTarget(target, "instance", "a policy covers whole agents: drop the #INSTANCE")
    checked: Literal["kill", "pause", "alert"] = "pause" if action == "pause" else "kill"
    if action == "alert":
        checked = "alert"
    mode: Literal["wait", "proceed"] = "proceed" if on_unreachable == "proceed" else "wait"
    try:
        return Policy(
            name=name,
            target=tgt.uri,
            limits=parsed,
            action=checked,
            grace=grace,
            created_by=created_by,
            dry_run=dry_run,
            on_unreachable=mode,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "policy"
        raise ConfigError(f"invalid policy {where}: {first.get('msg', 'invalid')}") from exc


async def set_policy(conn: Connection, policy: Policy) -> int:
    """Create or replace the policy; returns the KV revision."""
    return await put_key(conn, conn.ns.policies_bucket, policy.name, encode(policy))


async def list_policies(conn: Connection) -> list[Policy]:
    """Every readable policy, by name (unreadable values are skipped, as the controller does)."""
    out: list[Policy] = []
    for key, entry in sorted((await scan_latest(conn, conn.ns.policies_bucket)).items()):
        with contextlib.suppress(ValidationError, ValueError):
            policy = Policy.model_validate_json(entry.value)
            if policy.name == key:
                out.append(policy)
    return out


async def remove_policy(conn: Connection, name: str) -> int:
    """Delete the policy; NotFound if there is none. Agents it killed stay killed: a human resumes."""
    if not _NAME.fullmatch(name):
        raise ConfigError(f"invalid policy name {name!r}: letters, digits, '_' and '-' (up to 64)")
    bucket = conn.ns.policies_bucket
    if name not in await scan_latest(conn, bucket, name):
        raise NotFound(f"no policy named {name!r}: see `mesh policy list`")
    return await delete_key(conn, bucket, name)


async def read_ledgers(conn: Connection) -> dict[str, Ledger]:
    """The quota ledgers of every budget (what was granted and spent), by key."""
    try:
        entries = await scan_latest(conn, conn.ns.quota_bucket)
    except NotProvisioned:  # a mesh provisioned before quota leases: nothing granted yet
        return {}
    ledgers: dict[str, Ledger] = {}
    for key, entry in entries.items():
        with contextlib.suppress(MalformedMessage):
            ledgers[key] = decode(Ledger, entry.value)
    return ledgers

"""The async operator API: kill, resume, list, get, status, events; works with the controller down."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Literal, TypeVar

from mesh.errors import InvalidTarget, NotFound
from mesh.protocol.codec import encode
from mesh.protocol.killcommand import (
    AckMatch,
    kill_command,
    kill_plan,
    kill_report,
    records_over,
    resume_command,
    resume_plan,
    resume_report,
    scoped_control_filters,
)
from mesh.protocol.kvwire import KVEntry
from mesh.protocol.models import AuditEvent, EventType, InstanceStatus, Status
from mesh.protocol.policy import Limit, Policy
from mesh.protocol.reports import AgentStatus, HeldBy, KillReport, ResumeReport
from mesh.protocol.stored import decode_checkpoints, decode_statuses
from mesh.protocol.target import Target, as_target, parse_agent_uri
from mesh.protocol.usage import UsageReport, build_usage
from mesh.runtime import tracing
from mesh.runtime.settings import Settings
from mesh.transport.acks import AckCollector
from mesh.transport.audit import audit_subject_for, publish_event
from mesh.transport.connection import Connection
from mesh.transport.eventlog import parse_since, read_events, subscribe_audit
from mesh.transport.kvscan import delete_key, put_key, scan_latest
from mesh.transport.refusals import Refusals

__all__ = ["AsyncMesh"]

T = TypeVar("T")
ALL = "agent://*/*/*"


class AsyncMesh:
    """The operator API over one NATS connection.

    ``async with AsyncMesh() as mesh: report = await mesh.kill("agent://acme/prod/mailer")``.
    Settings default to the environment (``NATS_URL``, ``MESH_PREFIX``, ``MESH_ACTOR`` ...).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        connection: Connection | None = None,
        name: str = "mesh-operator",
    ) -> None:
        if connection is not None:
            settings = settings or connection.settings
        self.settings = settings or Settings.from_env()
        self._conn = connection
        self._owns = connection is None
        self._name = name
        self._refusals: Refusals | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    async def connect(self) -> AsyncMesh:
        if self._conn is None:
            self._conn = await Connection.open(self.settings, name=self._name)
        if self._refusals is None:
            self._refusals = Refusals(self._conn)
        return self

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        refusals, self._refusals = self._refusals, None
        if refusals is not None:
            refusals.close()
        if conn is not None and self._owns:
            await conn.close()

    async def __aenter__(self) -> AsyncMesh:
        return await self.connect()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def connection(self) -> Connection:
        if self._conn is None:
            raise RuntimeError(
                "AsyncMesh is not connected: use `async with AsyncMesh()` or `await connect()`"
            )
        return self._conn

    async def _guard(self, operation: str, awaitable: Awaitable[T], *, publishes_to: str) -> T:
        assert self._refusals is not None
        return await self._refusals.guard(operation, awaitable, publishes_to=publishes_to)

    async def _records_over(self, tgt: Target) -> dict[str, KVEntry]:
        """The control bucket's entries that can overlap ``tgt``.

        One scan of the whole bucket, except for a scoped identity, which may read only keys
        inside its org: one scan per key shape that can hold such a record (global records, under
        ``_`` orgs, are out of its sight).
        """
        conn = self.connection
        bucket = conn.ns.control_bucket
        if not conn.scoped:
            return await scan_latest(conn, bucket)
        out: dict[str, KVEntry] = {}
        for key_filter in scoped_control_filters(tgt):
            out.update(await scan_latest(conn, bucket, key_filter))
        return out

    # -- commands -------------------------------------------------------------------------------
    async def kill(
        self,
        target: str | Target,
        *,
        instance: str | None = None,
        reason: str | None = None,
        grace: float = 10.0,
        wait: float = 2.0,
        action: Literal["raise", "pause"] | None = None,
        actor: str | None = None,
    ) -> KillReport:
        """Write a kill record for ``target`` and collect the halt acknowledgements for ``wait`` s.

        Works with only NATS running: the record is the kill; acks come straight from instances.
        ``actor`` names who kills in the audit log (default: the settings' ``MESH_ACTOR`` or OS user).
        """
        command = kill_command(
            as_target(target, instance),
            actor=actor or self.settings.resolve_actor(),
            reason=reason,
            grace=grace,
            action=action,
        )
        # agent-mesh[otel]: the kill is one trace; the record carries its context to every instance.
        attributes = {"mesh.target": str(command.target), "mesh.actor": command.record.actor}
        span = tracing.start("mesh.kill", None, attributes)
        if (carried := tracing.carrier(span)) is not None:
            traced = command.record.model_copy(update={"trace": carried})
            command = dataclasses.replace(command, record=traced)
        tgt = command.target
        conn = self.connection
        ns = conn.ns
        collector = AckCollector(tgt, command.acks)
        subs = await self.connection.subscribe_all(
            [ns.audit_filter(EventType.HALTED.value, tgt), ns.audit_filter(EventType.TERMINATED.value, tgt)],
            collector.on_msg,
        )
        audit: asyncio.Task[Any] | None = None
        try:
            # The record goes out first: the server handles one connection's requests in order,
            # and anything sent before it (like the scan of expected instances) would delay the kill.
            write = tracing.start("mesh.kill.kv_write", tracing.carrier(span), {"mesh.key": command.key})
            revision = await self._guard(
                "write kill records",
                put_key(conn, ns.control_bucket, command.key, encode(command.record)),
                publishes_to=f"$KV.{ns.control_bucket}.{command.key}",
            )
            tracing.end(write, **{"mesh.revision": revision})
            collector.known_revision(revision)
            scan = asyncio.ensure_future(scan_latest(conn, ns.instances_bucket, ns.instance_key_filter(tgt)))
            audit = asyncio.ensure_future(self._audit(command.event(revision)))
            plan = kill_plan(tgt, decode_statuses(await scan))
            # Instances already paused by another record may have nothing new to say: wait for
            # them (the SDK acks every new record), but do not call them silent if they are not.
            collector.expect(plan.expected)
            await collector.wait(wait)
            await Connection.unsubscribe_all(subs)
            subs = []
            await audit
        finally:
            await Connection.unsubscribe_all(subs)
            if audit is not None and not audit.done():
                audit.cancel()
            tracing.end_kill(span, command.record, collector.rows.values())
        return kill_report(command, revision, plan, collector.rows)

    async def resume(
        self,
        target: str | Target,
        *,
        instance: str | None = None,
        reason: str | None = None,
        wait: float = 2.0,
        actor: str | None = None,
    ) -> ResumeReport:
        """Clear exactly the kill record of ``target`` and collect ``resumed`` acknowledgements.

        The report names every other record in force that still holds part of the target.
        """
        command = resume_command(
            as_target(target, instance), actor=actor or self.settings.resolve_actor(), reason=reason
        )
        tgt = command.target
        conn = self.connection
        ns = conn.ns
        collector = AckCollector(tgt, AckMatch(frozenset({command.command_id}), or_later=True))
        subs = await self.connection.subscribe_all(
            [ns.audit_filter(EventType.RESUMED.value, tgt)], collector.on_msg
        )
        try:
            scan = asyncio.ensure_future(scan_latest(conn, ns.instances_bucket, ns.instance_key_filter(tgt)))
            records = await self._records_over(tgt)
            collector.match = command.acks(records)
            revision = await self._guard(
                "write kill records",
                delete_key(conn, ns.control_bucket, command.key),
                publishes_to=f"$KV.{ns.control_bucket}.{command.key}",
            )
            collector.known_revision(revision)
            audit = asyncio.ensure_future(
                self._audit(command.event(revision, cleared=command.key in records))
            )
            plan = resume_plan(command, records, decode_statuses(await scan))
            collector.expect(plan.expected)
            if plan.wait:
                await collector.wait(wait)
            await audit
        finally:
            await Connection.unsubscribe_all(subs)
        return resume_report(command, revision, plan, collector.rows)

    async def _audit(self, event: AuditEvent) -> None:
        ns = self.connection.ns
        await self._guard(
            "write audit events",
            publish_event(self.connection.js, ns, event),
            publishes_to=audit_subject_for(ns, event),
        )

    # -- queries --------------------------------------------------------------------------------
    async def list_instances(
        self, pattern: str | Target = ALL, status: Status | str | None = None
    ) -> list[InstanceStatus]:
        """Instances under ``pattern`` as the controller last recorded them, optionally of one status."""
        tgt = as_target(pattern)
        conn = self.connection
        wanted = Status(status) if status is not None else None
        entries = await scan_latest(conn, conn.ns.instances_bucket, conn.ns.instance_key_filter(tgt))
        return [
            s
            for s in decode_statuses(entries)
            if (wanted is None or s.status is wanted)
            and tgt.matches(parse_agent_uri(s.agent_uri), s.instance)
        ]

    async def get(self, uri: str, instance: str | None = None) -> InstanceStatus:
        """One instance (``agent://ORG/ENV/NAME#INSTANCE``); NotFound if the mesh has no record of it."""
        tgt = as_target(uri, instance)
        if not tgt.is_exact or tgt.instance is None:
            raise InvalidTarget(
                str(tgt), "instance", "get() needs one instance: agent://ORG/ENV/NAME#INSTANCE"
            )
        found = await self.list_instances(tgt)
        if not found:
            raise NotFound(f"no instance {tgt.instance!r} of {tgt.uri} is known: see `mesh list`")
        return found[0]

    async def status(self, uri: str, instance: str | None = None) -> AgentStatus:
        """One agent: the kill records in force over it, its instances, their last checkpoints."""
        tgt = as_target(uri, instance)
        if not tgt.is_exact:
            raise InvalidTarget(str(tgt), "uri", "status needs one agent, not a pattern: use `mesh list`")
        conn = self.connection
        ns = conn.ns
        key_filter = ns.instance_key_filter(tgt)
        control, instances, checkpoints = await asyncio.gather(
            self._records_over(tgt),
            scan_latest(conn, ns.instances_bucket, key_filter),
            scan_latest(conn, ns.checkpoints_bucket, key_filter),
        )
        saved = decode_checkpoints(checkpoints, tgt.uri)
        return AgentStatus(
            agent_uri=str(tgt),
            records=records_over(control, tgt),
            instances=decode_statuses(instances),
            checkpoints=saved,
        )

    async def records(self, pattern: str | Target = ALL) -> list[HeldBy]:
        """The kill records in force that overlap ``pattern``."""
        tgt = as_target(pattern)
        return records_over(await self._records_over(tgt), tgt)

    # -- policies and usage ---------------------------------------------------------------------
    async def set_policy(
        self,
        name: str,
        target: str | Target,
        limits: list[str] | list[Limit],
        action: Literal["kill", "pause", "alert"] = "kill",
        grace: float = 10.0,
        *,
        dry_run: bool = False,
        on_unreachable: Literal["wait", "proceed"] = "wait",
        actor: str | None = None,
    ) -> Policy:
        """Create or replace policy ``name`` on ``target`` (e.g. limits ``["emails<=10000/1h"]``).

        The active controller applies it within about a second, to agents created later too.
        A breach kills (or pauses) every instance of the breaching agent, never the whole pattern;
        ``alert`` only reports it (an audit event and a metric), ``dry_run`` reports what it would
        have done. Counter limits are also enforced before the action by quota leases (``spend``);
        ``on_unreachable`` says what an instance does when the controller cannot be reached.
        """
        from mesh.transport import policystore

        policy = policystore.build_policy(
            name,
            str(target),
            limits,
            action=action,
            grace=grace,
            created_by=actor or self.settings.resolve_actor(),
            dry_run=dry_run,
            on_unreachable=on_unreachable,
        )
        bucket = self.connection.ns.policies_bucket
        await self._guard(
            "write policies",
            policystore.set_policy(self.connection, policy),
            publishes_to=f"$KV.{bucket}.{policy.name}",
        )
        return policy

    async def list_policies(self) -> list[Policy]:
        """Every policy, by name."""
        from mesh.transport import policystore

        return await policystore.list_policies(self.connection)

    async def remove_policy(self, name: str) -> None:
        """Delete policy ``name`` (NotFound if none). Agents it killed stay killed: resume them."""
        from mesh.transport import policystore

        bucket = self.connection.ns.policies_bucket
        await self._guard(
            "write policies",
            policystore.remove_policy(self.connection, name),
            publishes_to=f"$KV.{bucket}.{name}",
        )

    async def usage(
        self, pattern: str | Target = ALL, since: datetime | timedelta | str | None = None
    ) -> UsageReport:
        """Usage counters per agent and instance (totals, and average rates per hour), and per agent
        the budgets of its counter limits: limit, spent, leased out, left."""
        from mesh.protocol.budgets import budget_rows
        from mesh.transport import policystore

        tgt = as_target(pattern)
        conn = self.connection
        statuses = await self.list_instances(tgt)
        policies = await policystore.list_policies(conn)
        ledgers = await policystore.read_ledgers(conn) if any(p.budgets() for p in policies) else {}
        now = time.time()
        return build_usage(
            str(tgt),
            statuses,
            parse_since(since),
            lambda uri, insts: budget_rows(conn.ns, uri, policies, ledgers, insts, now),
        )

    def events(
        self,
        pattern: str | Target = ALL,
        since: datetime | timedelta | str | None = None,
        follow: bool = False,
    ) -> AsyncIterator[AuditEvent]:
        """Audit events under ``pattern``, oldest first (``since``: datetime, timedelta, ``1h`` or ISO)."""
        return read_events(self.connection, as_target(pattern), since=parse_since(since), follow=follow)

    def subscribe_audit(self, pattern: str | Target = ALL, *, durable: str) -> AsyncIterator[AuditEvent]:
        """Follow the audit log through the durable consumer ``durable``, resuming where it left off."""
        return subscribe_audit(self.connection, as_target(pattern), durable=durable)

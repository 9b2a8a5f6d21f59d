"""The async operator API: kill, resume, list, get, status, events; works with the controller down."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Literal, TypeVar

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from mesh import tracing
from mesh.acks import AckCollector
from mesh.audit import audit_subject_for, publish_event
from mesh.codec import decode, encode
from mesh.connection import Connection
from mesh.errors import InvalidTarget, MalformedMessage, NotFound, NotProvisioned, PermissionDenied
from mesh.eventlog import parse_since, read_events, subscribe_audit
from mesh.kvscan import KVEntry, delete_key, put_key, scan_latest
from mesh.models import (
    LIVE_STATUSES,
    AuditEvent,
    Checkpoint,
    EventType,
    InstanceStatus,
    KillRecord,
    Status,
    new_id,
    utcnow,
)
from mesh.policy import Limit, Policy
from mesh.quota import Ledger
from mesh.reports import AgentStatus, HeldBy, KillReport, ResumeReport, SilentInstance
from mesh.settings import Settings
from mesh.subjects import key_to_target
from mesh.target import Target, parse_agent_uri, parse_target
from mesh.usage import UsageReport, build_usage

__all__ = ["AsyncMesh"]

T = TypeVar("T")
ALL = "agent://*/*/*"


def _as_target(target: str | Target, instance: str | None = None) -> Target:
    if isinstance(target, Target):
        return target.with_instance(instance) if instance is not None else target
    return parse_target(target, instance)


def _decode_statuses(entries: dict[str, KVEntry]) -> list[InstanceStatus]:
    out: list[InstanceStatus] = []
    for entry in entries.values():
        with contextlib.suppress(MalformedMessage):
            out.append(decode(InstanceStatus, entry.value))
    return sorted(out, key=lambda s: (s.agent_uri, s.instance))


def _decode_checkpoint(entry: KVEntry, agent_uri: str, instance: str) -> Checkpoint | None:
    try:
        return decode(Checkpoint, entry.value)
    except MalformedMessage:
        import json

        try:
            state = json.loads(entry.value)
        except ValueError:
            return None
        return Checkpoint(agent_uri=agent_uri, instance=instance, seq=entry.revision, state=state)


def _records(entries: dict[str, KVEntry], over: Target, *, skip: str | None = None) -> list[HeldBy]:
    held: list[HeldBy] = []
    for key, entry in sorted(entries.items()):
        if key == skip:
            continue
        try:
            target = key_to_target(key)
        except InvalidTarget:
            continue
        if not target.overlaps(over):
            continue
        try:
            record = decode(KillRecord, entry.value)
        except MalformedMessage:
            record = KillRecord(target=target.uri, reason="unreadable kill record (treated as in force)")
        held.append(HeldBy(key=key, target=str(target), revision=entry.revision, record=record))
    return held


def _covers(outer: Target, inner: Target) -> bool:
    """Whether every instance ``inner`` covers is also covered by ``outer``."""
    for a, b in zip(outer.tokens, inner.tokens, strict=True):
        if a != "*" and a != b:
            return False
    return outer.instance is None or outer.instance == inner.instance


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
        self._denied: list[str] = []
        self._denied_event: asyncio.Event | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    async def connect(self) -> AsyncMesh:
        if self._conn is None:
            self._conn = await Connection.open(self.settings, name=self._name)
        if self._denied_event is None:
            self._hook_errors(self._conn)
        return self

    async def close(self) -> None:
        conn, self._conn = self._conn, None
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

    def _hook_errors(self, conn: Connection) -> None:
        """nats-py reports permission violations only to ``error_cb``; notice them at once."""
        event = asyncio.Event()
        self._denied_event = event
        nc: Any = conn.nc
        original = nc._error_cb

        async def error_cb(exc: Exception) -> None:
            text = str(exc)
            if "permissions violation" in text.lower():
                self._denied.append(text)
                event.set()
            await original(exc)

        nc._error_cb = error_cb

    async def _guard(self, operation: str, awaitable: Awaitable[T], *, publishes_to: str) -> T:
        """Await ``awaitable``, failing at once with PermissionDenied if the server refuses it.

        Only a refused publish to ``publishes_to`` counts: a refused subscription (to the
        acknowledgements, say) arrives on the same error callback but must not fail a kill
        that the server did accept.
        """
        event = self._denied_event
        assert event is not None
        wanted = f'publish to "{publishes_to}"'.lower()
        seen = len(self._denied)
        task = asyncio.ensure_future(awaitable)
        while True:
            event.clear()
            if any(wanted in text.lower() for text in self._denied[seen:]):
                break
            waiter = asyncio.ensure_future(event.wait())
            try:
                await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
            if task.done():
                return task.result()
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        detail = next(text for text in self._denied[seen:] if wanted in text.lower())
        raise PermissionDenied(operation, subject=publishes_to, detail=detail)

    async def _subscribe(
        self, subjects: list[str], cb: Callable[[Msg], Awaitable[None]]
    ) -> list[Subscription]:
        nc = self.connection.nc
        return [await nc.subscribe(s, cb=cb) for s in subjects]

    @staticmethod
    async def _unsubscribe(subs: list[Subscription]) -> None:
        for sub in subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

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
    ) -> KillReport:
        """Write a kill record for ``target`` and collect the halt acknowledgements for ``wait`` s.

        Works with only NATS running: the record is the kill; acks come straight from instances.
        """
        tgt = _as_target(target, instance)
        conn = self.connection
        ns = conn.ns
        key = ns.control_key(tgt)
        actor = self.settings.resolve_actor()
        # agent-mesh[otel]: the kill is one trace; the record carries its context to every instance.
        span = tracing.start("mesh.kill", None, {"mesh.target": str(tgt), "mesh.actor": actor})
        record = KillRecord(
            target=tgt.uri,
            instance=tgt.instance,
            actor=actor,
            reason=reason,
            grace=grace,
            action=action,
            trace=tracing.carrier(span),
        )
        revision = 0

        def ours(event: AuditEvent) -> bool:
            return event.command_id == record.command_id or (revision > 0 and event.revision == revision)

        collector = AckCollector(tgt, ours)
        subs = await self._subscribe(
            [ns.audit_filter(EventType.HALTED.value, tgt), ns.audit_filter(EventType.TERMINATED.value, tgt)],
            collector.on_msg,
        )
        audit: asyncio.Task[Any] | None = None
        try:
            # The record goes out first: the server handles one connection's requests in order,
            # and anything sent before it (like the scan of expected instances) would delay the kill.
            write = tracing.start("mesh.kill.kv_write", tracing.carrier(span), {"mesh.key": key})
            revision = await self._guard(
                "write kill records",
                put_key(conn, ns.control_bucket, key, encode(record)),
                publishes_to=f"$KV.{ns.control_bucket}.{key}",
            )
            tracing.end(write, **{"mesh.revision": revision})
            scan = asyncio.ensure_future(scan_latest(conn, ns.instances_bucket, ns.instance_key_filter(tgt)))
            event = AuditEvent(
                type=EventType.KILL,
                target=tgt.uri,
                instance=tgt.instance,
                actor=actor,
                reason=reason,
                command_id=record.command_id,
                revision=revision,
                data={"key": key, "grace": grace, "action": action},
            )
            audit = asyncio.ensure_future(
                self._guard(
                    "write audit events",
                    publish_event(conn.js, ns, event),
                    publishes_to=audit_subject_for(ns, event),
                )
            )
            statuses = [
                s
                for s in _decode_statuses(await scan)
                if s.status in LIVE_STATUSES and tgt.matches(parse_agent_uri(s.agent_uri), s.instance)
            ]
            already = {
                (s.agent_uri, s.instance) for s in statuses if s.status is Status.PAUSED and s.kill_keys
            }
            # Instances already paused by another record may have nothing new to say: wait for
            # them (the SDK acks every new record), but do not call them silent if they are not.
            collector.expect({(s.agent_uri, s.instance) for s in statuses})
            await collector.wait(wait)
            await self._unsubscribe(subs)
            subs = []
            await audit
        finally:
            await self._unsubscribe(subs)
            if audit is not None and not audit.done():
                audit.cancel()
            _trace_acks(span, record, collector)
        rows = collector.rows
        missing = [
            SilentInstance(
                agent_uri=s.agent_uri, instance=s.instance, status=s.status.value, last_seen=s.last_seen
            )
            for s in statuses
            if (s.agent_uri, s.instance) not in already and (s.agent_uri, s.instance) not in rows
        ]
        halted_before = [
            SilentInstance(
                agent_uri=s.agent_uri, instance=s.instance, status=s.status.value, last_seen=s.last_seen
            )
            for s in statuses
            if (s.agent_uri, s.instance) in already and (s.agent_uri, s.instance) not in rows
        ]
        return KillReport(
            target=str(tgt),
            command_id=record.command_id,
            revision=revision,
            actor=actor,
            reason=reason,
            issued_at=record.issued_at,
            instances=sorted(rows.values(), key=lambda r: (r.agent_uri, r.instance)),
            missing=missing,
            expected=len(statuses),
            already_halted=halted_before,
        )

    async def resume(
        self,
        target: str | Target,
        *,
        instance: str | None = None,
        reason: str | None = None,
        wait: float = 2.0,
    ) -> ResumeReport:
        """Clear exactly the kill record of ``target`` and collect ``resumed`` acknowledgements.

        The report names every other record in force that still holds part of the target.
        """
        tgt = _as_target(target, instance)
        conn = self.connection
        ns = conn.ns
        key = ns.control_key(tgt)
        actor = self.settings.resolve_actor()
        command_id = new_id()
        issued_at = utcnow()
        revision = 0
        previous: set[str] = set()

        def ours(event: AuditEvent) -> bool:
            # The SDK's ``resumed`` carries no command id: any resume seen after the delete counts.
            if event.command_id is not None and event.command_id in previous | {command_id}:
                return True
            return revision > 0 and (event.revision is None or event.revision >= revision)

        collector = AckCollector(tgt, ours)
        subs = await self._subscribe([ns.audit_filter(EventType.RESUMED.value, tgt)], collector.on_msg)
        try:
            scan = asyncio.ensure_future(scan_latest(conn, ns.instances_bucket, ns.instance_key_filter(tgt)))
            records = await scan_latest(conn, ns.control_bucket)
            if key in records:
                with contextlib.suppress(MalformedMessage):
                    previous.add(decode(KillRecord, records[key].value).command_id)
            revision = await self._guard(
                "write kill records",
                delete_key(conn, ns.control_bucket, key),
                publishes_to=f"$KV.{ns.control_bucket}.{key}",
            )
            event = AuditEvent(
                type=EventType.RESUME,
                target=tgt.uri,
                instance=tgt.instance,
                actor=actor,
                reason=reason,
                command_id=command_id,
                revision=revision,
                data={"key": key, "cleared": key in records},
            )
            audit = asyncio.ensure_future(
                self._guard(
                    "write audit events",
                    publish_event(conn.js, ns, event),
                    publishes_to=audit_subject_for(ns, event),
                )
            )
            held = _records(records, tgt, skip=key)
            held_targets = [key_to_target(h.key) for h in held]
            statuses = [
                s
                for s in _decode_statuses(await scan)
                if s.status is Status.PAUSED and tgt.matches(parse_agent_uri(s.agent_uri), s.instance)
            ]
            free = [
                s
                for s in statuses
                if not any(t.matches(parse_agent_uri(s.agent_uri), s.instance) for t in held_targets)
            ]
            collector.expect({(s.agent_uri, s.instance) for s in free})
            if free or not (statuses or any(_covers(t, tgt) for t in held_targets)):
                await collector.wait(wait)
            await audit
        finally:
            await self._unsubscribe(subs)
        rows = collector.rows
        return ResumeReport(
            target=str(tgt),
            command_id=command_id,
            revision=revision,
            actor=actor,
            reason=reason,
            issued_at=issued_at,
            instances=sorted(rows.values(), key=lambda r: (r.agent_uri, r.instance)),
            missing=[
                SilentInstance(
                    agent_uri=s.agent_uri, instance=s.instance, status=s.status.value, last_seen=s.last_seen
                )
                for s in free
                if (s.agent_uri, s.instance) not in rows
            ],
            expected=len(free),
            still_held_by=held,
            cleared=key in records,
        )

    # -- queries --------------------------------------------------------------------------------
    async def list_instances(
        self, pattern: str | Target = ALL, status: Status | str | None = None
    ) -> list[InstanceStatus]:
        """Instances under ``pattern`` as the controller last recorded them, optionally of one status."""
        tgt = _as_target(pattern)
        conn = self.connection
        wanted = Status(status) if status is not None else None
        entries = await scan_latest(conn, conn.ns.instances_bucket, conn.ns.instance_key_filter(tgt))
        return [
            s
            for s in _decode_statuses(entries)
            if (wanted is None or s.status is wanted)
            and tgt.matches(parse_agent_uri(s.agent_uri), s.instance)
        ]

    async def get(self, uri: str, instance: str | None = None) -> InstanceStatus:
        """One instance (``agent://ORG/ENV/NAME#INSTANCE``); NotFound if the mesh has no record of it."""
        tgt = _as_target(uri, instance)
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
        tgt = _as_target(uri, instance)
        if not tgt.is_exact:
            raise InvalidTarget(str(tgt), "uri", "status needs one agent, not a pattern: use `mesh list`")
        conn = self.connection
        ns = conn.ns
        key_filter = ns.instance_key_filter(tgt)
        control, instances, checkpoints = await asyncio.gather(
            scan_latest(conn, ns.control_bucket),
            scan_latest(conn, ns.instances_bucket, key_filter),
            scan_latest(conn, ns.checkpoints_bucket, key_filter),
        )
        saved: dict[str, Checkpoint] = {}
        for key, entry in checkpoints.items():
            name = key.rsplit(".", 1)[-1]
            checkpoint = _decode_checkpoint(entry, tgt.uri, name)
            if checkpoint is not None:
                saved[name] = checkpoint
        return AgentStatus(
            agent_uri=str(tgt),
            records=_records(control, tgt),
            instances=_decode_statuses(instances),
            checkpoints=saved,
        )

    async def records(self, pattern: str | Target = ALL) -> list[HeldBy]:
        """The kill records in force that overlap ``pattern``."""
        tgt = _as_target(pattern)
        conn = self.connection
        return _records(await scan_latest(conn, conn.ns.control_bucket), tgt)

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
    ) -> Policy:
        """Create or replace policy ``name`` on ``target`` (e.g. limits ``["emails<=10000/1h"]``).

        The active controller applies it within about a second, to agents created later too.
        A breach kills (or pauses) every instance of the breaching agent, never the whole pattern;
        ``alert`` only reports it (an audit event and a metric), ``dry_run`` reports what it would
        have done. Counter limits are also enforced before the action by quota leases (``spend``);
        ``on_unreachable`` says what an instance does when the controller cannot be reached.
        """
        from mesh import policystore

        policy = policystore.build_policy(
            name,
            str(target),
            limits,
            action=action,
            grace=grace,
            created_by=self.settings.resolve_actor(),
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
        from mesh import policystore

        return await policystore.list_policies(self.connection)

    async def remove_policy(self, name: str) -> None:
        """Delete policy ``name`` (NotFound if none). Agents it killed stay killed: resume them."""
        from mesh import policystore

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
        from mesh import policystore
        from mesh.budgets import budget_rows

        tgt = _as_target(pattern)
        conn = self.connection
        statuses = await self.list_instances(tgt)
        policies = await policystore.list_policies(conn)
        ledgers: dict[str, Ledger] = {}
        if any(p.budgets() for p in policies):
            try:
                entries = await scan_latest(conn, conn.ns.quota_bucket)
            except NotProvisioned:  # a mesh provisioned before quota leases: nothing granted yet
                entries = {}
            for key, entry in entries.items():
                with contextlib.suppress(MalformedMessage):
                    ledgers[key] = decode(Ledger, entry.value)
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
        return read_events(self.connection, _as_target(pattern), since=parse_since(since), follow=follow)

    def subscribe_audit(self, pattern: str | Target = ALL, *, durable: str) -> AsyncIterator[AuditEvent]:
        """Follow the audit log through the durable consumer ``durable``, resuming where it left off."""
        return subscribe_audit(self.connection, _as_target(pattern), durable=durable)


def _trace_acks(span: Any, record: KillRecord, collector: AckCollector) -> None:
    """End the kill's span, with one child per acknowledgement: kill issued → ack (who was slow)."""
    if span is None:
        return
    for row in collector.rows.values():
        if row.time is None:
            continue
        tracing.record_span(
            "mesh.kill.ack",
            span,
            record.issued_at,
            row.time,
            **{"mesh.agent_uri": row.agent_uri, "mesh.instance": row.instance, "mesh.status": row.status},
        )
    tracing.end(span, **{"mesh.command_id": record.command_id, "mesh.acked": len(collector.rows)})

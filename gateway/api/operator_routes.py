"""Operator routes (operator or auditor API keys): kill, resume, agents, status, events, policies, usage.

Every body is the CLI's ``--json`` output for the same command, from the same serializer.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import AsyncIterator
from typing import TypeVar

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from gateway.api.context import Api
from gateway.api.http import handler, parse_body, query_bool, query_int, reply
from gateway.api.models import KillIn, ResumeIn
from gateway.api.rights import Right
from gateway.errors import Invalid
from mesh.client.operator import AsyncMesh
from mesh.errors import ConfigError
from mesh.protocol.models import EventType, Status
from mesh.protocol.shapes import event_json, instance_json, policy_json
from mesh.protocol.target import Target, parse_target
from mesh.transport.eventlog import parse_since

__all__ = ["operator_routes"]

ALL = "agent://*/*/*"
#: The bodies of the two orders, kill and resume.
Order = TypeVar("Order", KillIn, ResumeIn)


def _target(request: Request, name: str = "pattern", default: str | None = ALL) -> Target:
    raw = request.query_params.get(name, default)
    if raw is None:
        raise Invalid(f"{name}: required (agent://ORG/ENV/NAME)", field=name)
    return parse_target(raw)


def _since(request: Request) -> str | None:
    raw = request.query_params.get("since")
    if raw is not None:
        try:
            parse_since(raw)
        except ConfigError:
            raise Invalid(
                "since: use a duration like 30s, 15m, 1h, 2d, or an ISO time", field="since"
            ) from None
    return raw


def _types(request: Request) -> set[str] | None:
    raw = request.query_params.get("type")
    if raw is None:
        return None
    wanted = {t.strip() for t in raw.split(",") if t.strip()}
    known = {t.value for t in EventType}
    bad = sorted(wanted - known)
    if bad:
        raise Invalid(
            f"type: unknown event type {bad[0]!r}: use one of {', '.join(sorted(known))}", field="type"
        )
    return wanted


def operator_routes(api: Api) -> list[BaseRoute]:
    limit = api.config.max_body_bytes
    wrap = handler(api.gw.rejected)

    async def order(request: Request, right: Right, model: type[Order]) -> tuple[AsyncMesh, Order, Target]:
        """The caller's mesh, the body and the target of a kill or resume: all checked before any write."""
        caller = await api.caller(request, right)
        body = await parse_body(request, model, limit)
        if body.wait > api.config.max_wait:
            raise Invalid(f"wait: at most {api.config.max_wait:g} seconds", field="wait")
        target = parse_target(body.target, body.instance)  # 400 naming the bad part
        return await api.mesh(caller), body, target

    @wrap
    async def kill(request: Request) -> Response:
        mesh, body, target = await order(request, "kill", KillIn)
        report = await mesh.kill(
            target, reason=body.reason, grace=body.grace, wait=body.wait, action=body.action
        )
        return reply(report.to_json())

    @wrap
    async def resume(request: Request) -> Response:
        mesh, body, target = await order(request, "resume", ResumeIn)
        report = await mesh.resume(target, reason=body.reason, wait=body.wait)
        return reply(report.to_json())

    @wrap
    async def agents(request: Request) -> Response:
        caller = await api.caller(request, "read_fleet")
        target = _target(request)
        status = request.query_params.get("status")
        if status is not None and status not in {s.value for s in Status}:
            raise Invalid(f"status: use one of {', '.join(s.value for s in Status)}", field="status")
        mesh = await api.mesh(caller)
        return reply([instance_json(s) for s in await mesh.list_instances(target, status)])

    @wrap
    async def status(request: Request) -> Response:
        caller = await api.caller(request, "read_fleet")
        target = _target(request, "target", None)
        mesh = await api.mesh(caller)
        return reply((await mesh.status(str(target))).to_json())

    @wrap
    async def events(request: Request) -> Response:
        caller = await api.caller(request, "read_events")
        target = _target(request)
        since = _since(request)
        types = _types(request)
        count = query_int(request, "limit", 1000, 1, 10_000)
        follow = query_bool(request, "follow") or False
        mesh = await api.mesh(caller)
        if follow:
            return StreamingResponse(
                _sse(mesh.events(target, since, follow=True), types),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
            )
        newest: deque[dict[str, object]] = deque(maxlen=count)
        async for event in mesh.events(target, since):
            if types is None or event.type.value in types:
                newest.append(event_json(event))
        return reply(list(newest))

    @wrap
    async def policies(request: Request) -> Response:
        caller = await api.caller(request, "read_policies")
        mesh = await api.mesh(caller)
        return reply([policy_json(p) for p in await mesh.list_policies()])

    @wrap
    async def usage(request: Request) -> Response:
        caller = await api.caller(request, "read_usage")
        target = _target(request)
        since = _since(request)
        mesh = await api.mesh(caller)
        return reply((await mesh.usage(target, since)).to_json())

    return [
        Route("/api/v1/kill", kill, methods=["POST"]),
        Route("/api/v1/resume", resume, methods=["POST"]),
        Route("/api/v1/agents", agents, methods=["GET"]),
        Route("/api/v1/status", status, methods=["GET"]),
        Route("/api/v1/events", events, methods=["GET"]),
        Route("/api/v1/policies", policies, methods=["GET"]),
        Route("/api/v1/usage", usage, methods=["GET"]),
    ]


async def _sse(source: AsyncIterator[object], types: set[str] | None) -> AsyncIterator[bytes]:
    """Server-sent events, one audit event each (``id`` is the event's id, ``event`` its type)."""
    from mesh.protocol.models import AuditEvent

    yield b": following the audit log\n\n"
    async for event in source:
        assert isinstance(event, AuditEvent)
        if types is not None and event.type.value not in types:
            continue
        data = json.dumps(event_json(event), default=str)
        yield f"id: {event.id}\nevent: {event.type.value}\ndata: {data}\n\n".encode()

"""The ``/v1/mesh`` routes the ``axme`` client calls, served from the same mesh as ``/api/v1``."""

from __future__ import annotations

from collections import deque
from datetime import timedelta
from typing import Any

from pydantic import Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from gateway.api.axme import HEALTH, address_of, agent_rows, metrics_to_usage, newest, parse_address
from gateway.api.context import Api
from gateway.api.http import handler, parse_body, query_float, query_int, reply
from gateway.api.models import HeartbeatIn, _In
from gateway.errors import Invalid, NotFoundError
from mesh.protocol.models import EventType
from mesh.protocol.shapes import event_json

__all__ = ["axme_routes"]


class AxmeHeartbeatIn(_In):
    """What ``client.mesh.heartbeat(metrics=...)`` sends (an empty body without metrics)."""

    metrics: dict[str, Any] = Field(default_factory=dict)


def axme_routes(api: Api) -> list[BaseRoute]:
    limit = api.config.max_body_bytes
    wrap = handler(api.gw.rejected)
    #: Per instance, the AXME counters summed so far (they arrive as increments).
    totals: dict[str, dict[str, float]] = {}

    @wrap
    async def heartbeat(request: Request) -> Response:
        ident = await api.agent(request)
        body = await parse_body(request, AxmeHeartbeatIn, limit, empty_ok=True)
        held = totals.setdefault(f"{ident.agent_uri}#{ident.instance}", {})
        if len(totals) > 100_000:
            totals.pop(next(iter(totals)))
        usage, meta = metrics_to_usage(body.metrics, dict(held))
        answer = await api.agents.heartbeat(ident, HeartbeatIn(metadata=meta, usage=usage, interval=30.0))
        held.update(usage)
        return reply(
            {
                "ok": True,
                "address_id": address_of(ident.agent_uri, ident.instance),
                "health_status": "killed" if answer["killed"] else "healthy",
                **answer,
            }
        )

    @wrap
    async def agents(request: Request) -> Response:
        caller = await api.caller(request, "read_fleet")
        count = query_int(request, "limit", 100, 1, 10_000)
        health = request.query_params.get("health")
        if health is not None and health not in HEALTH:
            raise Invalid(f"health: use one of {', '.join(HEALTH)}", field="health")
        mesh = await api.mesh(caller)
        rows = agent_rows(await mesh.list_instances(), await mesh.records())
        if health is not None:
            rows = [r for r in rows if r["health_status"] == health]
        return reply({"ok": True, "agents": rows[:count], "total": len(rows)})

    @wrap
    async def agent(request: Request) -> Response:
        caller = await api.caller(request, "read_fleet")
        target = parse_address(request.path_params["address_id"])
        mesh = await api.mesh(caller)
        instances = [s for s in await mesh.list_instances(target.with_instance(None))
                     if target.instance is None or s.instance == target.instance]  # fmt: skip
        if not instances:
            raise NotFoundError(f"no agent {target} is known to the mesh: see GET /v1/mesh/agents")
        records = await mesh.records(target)
        row = agent_rows(instances, records)[0]
        recent: deque[dict[str, Any]] = deque(maxlen=20)
        async for event in mesh.events(target, timedelta(days=1)):
            recent.append(event_json(event))
        row.update(records=[h.to_json() for h in records], events=newest(recent))
        return reply({"ok": True, "agent": row})

    async def _command(request: Request, right: str) -> Response:
        caller = await api.caller(request, "kill" if right == "kill" else "resume")
        address = request.path_params["address_id"]
        target = parse_address(address)
        wait = query_float(request, "wait", 2.0, 0.0, api.config.max_wait)
        mesh = await api.mesh(caller)
        if right == "kill":
            report = (await mesh.kill(target, reason="killed through the AXME API", wait=wait)).to_json()
        else:
            report = (await mesh.resume(target, reason="resumed through the AXME API", wait=wait)).to_json()
        return reply({"ok": True, "address_id": address, "status": "killed" if right == "kill" else "active",
                      "report": report})  # fmt: skip

    @wrap
    async def kill(request: Request) -> Response:
        return await _command(request, "kill")

    @wrap
    async def resume(request: Request) -> Response:
        return await _command(request, "resume")

    @wrap
    async def events(request: Request) -> Response:
        caller = await api.caller(request, "read_events")
        count = query_int(request, "limit", 50, 1, 10_000)
        etype = request.query_params.get("event_type")
        known = {t.value for t in EventType}
        if etype is not None and etype not in known:
            raise Invalid(f"event_type: use one of {', '.join(sorted(known))}", field="event_type")
        mesh = await api.mesh(caller)
        recent: deque[dict[str, Any]] = deque(maxlen=count)
        async for event in mesh.events():
            if etype is None or event.type.value == etype:
                recent.append(event_json(event))
        return reply({"ok": True, "events": newest(recent)})

    return [
        Route("/v1/mesh/heartbeat", heartbeat, methods=["POST"]),
        Route("/v1/mesh/agents", agents, methods=["GET"]),
        Route("/v1/mesh/agents/{address_id}", agent, methods=["GET"]),
        Route("/v1/mesh/agents/{address_id}/kill", kill, methods=["POST"]),
        Route("/v1/mesh/agents/{address_id}/resume", resume, methods=["POST"]),
        Route("/v1/mesh/events", events, methods=["GET"]),
    ]

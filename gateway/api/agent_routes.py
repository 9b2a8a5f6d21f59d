"""Agent routes (a gateway virtual key): heartbeat, checkpoint, halted, control long-poll."""

from __future__ import annotations

from typing import TypeVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from gateway.api.context import Api
from gateway.api.http import handler, parse_body, query_bool, query_float, reply
from gateway.api.models import CheckpointIn, HaltedIn, HeartbeatIn
from gateway.keys import Identity
from mesh.protocol.models import Checkpoint

__all__ = ["agent_routes"]

#: The bodies that may name the instance the request acts as.
B = TypeVar("B", HeartbeatIn, CheckpointIn, HaltedIn)


def _checkpoint_json(
    agent_uri: str, instance: str, ckpt: Checkpoint | None, revision: int | None
) -> dict[str, object]:
    return {
        "agent_uri": agent_uri,
        "instance": instance,
        "seq": ckpt.seq if ckpt else None,
        "time": ckpt.time.isoformat() if ckpt else None,
        "state": ckpt.state if ckpt else None,
        "usage": dict(ckpt.usage) if ckpt else {},
        "revision": revision,
    }


def agent_routes(api: Api) -> list[BaseRoute]:
    limit = api.config.max_body_bytes
    wrap = handler(api.gw.rejected)

    async def agent_body(request: Request, model: type[B], *, empty_ok: bool = False) -> tuple[Identity, B]:
        """The agent behind the request and its body, acting as the instance the body names."""
        ident = await api.agent(request)
        body = await parse_body(request, model, limit, empty_ok=empty_ok)
        return await api.with_instance(request, ident, body.instance), body

    @wrap
    async def heartbeat(request: Request) -> Response:
        ident, body = await agent_body(request, HeartbeatIn, empty_ok=True)
        return reply(await api.agents.heartbeat(ident, body))

    @wrap
    async def control(request: Request) -> Response:
        ident = await api.agent(request)
        known = query_bool(request, "killed")
        wait = query_float(request, "wait", 30.0 if known is not None else 0.0, 0.0, api.config.max_wait)
        ident = await api.with_instance(request, ident, request.query_params.get("instance"))
        return reply(await api.agents.control(ident, known, wait))

    @wrap
    async def put_checkpoint(request: Request) -> Response:
        ident, body = await agent_body(request, CheckpointIn)
        ckpt, revision = await api.agents.write_checkpoint(ident, body)
        return reply(_checkpoint_json(ident.agent_uri, ident.instance, ckpt, revision))

    @wrap
    async def get_checkpoint(request: Request) -> Response:
        ident = await api.agent(request)
        ident = await api.with_instance(request, ident, request.query_params.get("instance"))
        ckpt, revision = await api.agents.read_checkpoint(ident)
        return reply(_checkpoint_json(ident.agent_uri, ident.instance, ckpt, revision))

    @wrap
    async def halted(request: Request) -> Response:
        ident, body = await agent_body(request, HaltedIn, empty_ok=True)
        return reply(await api.agents.halted(ident, body))

    return [
        Route("/api/v1/heartbeat", heartbeat, methods=["POST"]),
        Route("/api/v1/control", control, methods=["GET"]),
        Route("/api/v1/checkpoint", put_checkpoint, methods=["POST"]),
        Route("/api/v1/checkpoint", get_checkpoint, methods=["GET"]),
        Route("/api/v1/halted", halted, methods=["POST"]),
    ]

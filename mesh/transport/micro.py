"""A NATS micro service (``$SRV.PING/INFO/STATS``) with one endpoint answering a snapshot (``nats.micro``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.micro.request import Request
from nats.micro.service import EndpointStats, Service, ServiceConfig

__all__ = ["SnapshotService"]

log = structlog.get_logger("mesh.micro")


class _Service(Service):
    """``nats.micro``'s service, whose STATS also carries the figures at the top level (``data``).

    The micro schema puts them in each endpoint's ``data``; the top-level copy is what clients of
    the hand-written responder this replaces read, so it stays.
    """

    async def _handle_stats_request(self, msg: Msg) -> None:
        body = self.stats().to_dict()
        endpoints = body.get("endpoints") or [{}]
        body["data"] = endpoints[0].get("data")
        await msg.respond(json.dumps(body, default=str).encode())


class SnapshotService:
    """The micro discovery subjects plus one endpoint that answers ``snapshot()`` as JSON.

    Every answer follows the ``io.nats.micro.v1`` schemas; the snapshot is also the endpoint's
    ``data`` in STATS (and a top-level ``data``). The endpoint listens in the micro queue group
    ``q``: one instance of the service answers each request.
    """

    def __init__(
        self,
        nc: Client,
        *,
        name: str,
        version: str,
        description: str,
        metadata: dict[str, str],
        endpoint: str,
        subject: str,
        snapshot: Callable[[], dict[str, Any]],
    ) -> None:
        self.nc = nc
        self.config = ServiceConfig(
            name=name,
            version=version,
            description=description,
            metadata=metadata,
            stats_handler=self._stats_data,
        )
        self.endpoint = endpoint
        self.subject = subject
        self.snapshot = snapshot
        self._service: _Service | None = None

    @property
    def id(self) -> str:
        return self._service.id if self._service is not None else ""

    async def start(self) -> None:
        service = _Service(self.nc, self.config)
        await service.start()
        self._service = service
        await service.add_endpoint(name=self.endpoint, subject=self.subject, handler=self._answer)

    async def stop(self) -> None:
        service, self._service = self._service, None
        if service is None:
            return
        try:
            await service.stop()
        except Exception as exc:  # the connection may already be closing under us
            log.debug("service stop failed", error=str(exc) or type(exc).__name__)

    def _stats_data(self, _endpoint: EndpointStats) -> dict[str, Any]:
        return self.snapshot()

    async def _answer(self, request: Request) -> None:
        await request.respond(json.dumps(self.snapshot(), default=str).encode())

"""The NATS service API (``$SRV.PING/INFO/STATS``) of ``mesh-controller``, through ``nats.micro``."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.micro.request import Request
from nats.micro.service import EndpointStats, Service, ServiceConfig

__all__ = ["SERVICE_VERSION", "ServiceAPI"]

log = structlog.get_logger("controller.discovery")

SERVICE_VERSION = "0.1.0"
DESCRIPTION = "agent-mesh controller: live fleet status, stale/lost detection, audit"


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


class ServiceAPI:
    """The micro-service discovery subjects plus one ``status`` endpoint answering the snapshot.

    Every answer follows the ``io.nats.micro.v1`` schemas; the controller's own figures are in
    the ``status`` endpoint's ``data`` in STATS (and a top-level ``data``), and in its replies.
    The endpoint listens in the micro queue group ``q``: one controller answers each request.
    """

    def __init__(self, nc: NATS, name: str, prefix: str, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.nc = nc
        self.name = name
        self.prefix = prefix
        self.snapshot = snapshot
        self.endpoint_subject = f"{prefix}.controller.status"
        self._service: _Service | None = None

    @property
    def id(self) -> str:
        return self._service.id if self._service is not None else ""

    async def start(self) -> None:
        config = ServiceConfig(
            name=self.name,
            version=SERVICE_VERSION,
            description=DESCRIPTION,
            metadata={"prefix": self.prefix},
            stats_handler=self._stats_data,
        )
        service = _Service(self.nc, config)
        await service.start()
        self._service = service
        await service.add_endpoint(name="status", subject=self.endpoint_subject, handler=self._status)

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

    async def _status(self, request: Request) -> None:
        await request.respond(json.dumps(self.snapshot(), default=str).encode())

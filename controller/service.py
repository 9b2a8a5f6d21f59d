"""The NATS service API (``$SRV.PING/INFO/STATS``) for ``mesh-controller``, answered by hand."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

__all__ = ["SERVICE_VERSION", "ServiceAPI"]

log = structlog.get_logger("controller.service")

SERVICE_VERSION = "0.1.0"
_VERBS = ("PING", "INFO", "STATS")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class ServiceAPI:
    """Answers the micro-service discovery subjects plus one ``status`` endpoint.

    Every answer follows the ``io.nats.micro.v1`` schemas; the controller's own figures are in
    the endpoint's ``data`` (and, for convenience, a top-level ``data``) of STATS, and in the
    ``status`` endpoint's reply.
    """

    def __init__(self, nc: NATS, name: str, prefix: str, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.nc = nc
        self.name = name
        self.prefix = prefix
        self.snapshot = snapshot
        self.id = uuid.uuid4().hex[:22]
        self.started = time.time()
        self.endpoint_subject = f"{prefix}.controller.status"
        self.requests = 0
        self._subs: list[Subscription] = []

    def _identity(self, kind: str) -> dict[str, Any]:
        return {
            "type": f"io.nats.micro.v1.{kind}_response",
            "name": self.name,
            "id": self.id,
            "version": SERVICE_VERSION,
            "metadata": {"prefix": self.prefix},
        }

    async def start(self) -> None:
        handlers = {"PING": self._ping, "INFO": self._info, "STATS": self._stats}
        for verb in _VERBS:
            for subject in (f"$SRV.{verb}", f"$SRV.{verb}.{self.name}", f"$SRV.{verb}.{self.name}.{self.id}"):
                self._subs.append(await self.nc.subscribe(subject, cb=handlers[verb]))
        self._subs.append(await self.nc.subscribe(self.endpoint_subject, cb=self._status))

    async def stop(self) -> None:
        for sub in self._subs:
            try:
                await sub.unsubscribe()
            except Exception as exc:
                log.debug("unsubscribe failed", error=str(exc) or type(exc).__name__)
        self._subs.clear()

    async def _reply(self, msg: Msg, body: dict[str, Any]) -> None:
        if msg.reply:
            await msg.respond(json.dumps(body, default=str).encode())

    async def _ping(self, msg: Msg) -> None:
        await self._reply(msg, self._identity("ping"))

    async def _info(self, msg: Msg) -> None:
        body = self._identity("info")
        body["description"] = "agent-mesh controller: live fleet status, stale/lost detection, audit"
        body["endpoints"] = [
            {"name": "status", "subject": self.endpoint_subject, "queue_group": "q", "metadata": None}
        ]
        await self._reply(msg, body)

    async def _stats(self, msg: Msg) -> None:
        data = self.snapshot()
        body = self._identity("stats")
        body["started"] = _iso(self.started)
        body["endpoints"] = [
            {
                "name": "status",
                "subject": self.endpoint_subject,
                "queue_group": "q",
                "num_requests": self.requests,
                "num_errors": 0,
                "last_error": "",
                "processing_time": 0,
                "average_processing_time": 0,
                "data": data,
            }
        ]
        body["data"] = data
        await self._reply(msg, body)

    async def _status(self, msg: Msg) -> None:
        self.requests += 1
        await self._reply(msg, self.snapshot())

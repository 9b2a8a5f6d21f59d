"""Kill and resume from the page, through the ``mesh`` operator API, recorded as ``dashboard:<user>``."""

from __future__ import annotations

from typing import Any, Literal

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException

from mesh.client.operator import ALL, AsyncMesh
from mesh.errors import (
    ConfigError,
    ConnectionFailed,
    InvalidTarget,
    MeshError,
    MeshTimeout,
    NotProvisioned,
    PermissionDenied,
)
from mesh.protocol.target import parse_target
from mesh.transport.connection import Connection

__all__ = ["STOP_EVERYTHING", "CommandRequest", "Commands"]

log = structlog.get_logger("controller.dashboard.commands")

#: What an operator types to confirm a kill of every agent.
STOP_EVERYTHING = "STOP EVERYTHING"


class CommandRequest(BaseModel):
    """The JSON body of ``POST /api/kill`` and ``POST /api/resume``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target: str = Field(min_length=1, max_length=512)
    instance: str | None = Field(default=None, max_length=64)
    reason: str = Field(min_length=1, max_length=4096)
    user: str | None = Field(default=None, max_length=64)
    grace: float = Field(default=10.0, ge=0, le=86400)
    #: Required for a kill of ``agent://*/*/*``: the text ``STOP EVERYTHING``.
    confirm: str | None = Field(default=None, max_length=64)

    @classmethod
    def parse(cls, body: Any) -> CommandRequest:
        try:
            request = cls.model_validate(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ())) or "body"
            raise HTTPException(400, f"invalid request: {where}: {first.get('msg', 'invalid')}") from exc
        if not request.reason.strip():
            raise HTTPException(400, "a reason is required: it goes into the audit log")
        return request


def _http_error(exc: MeshError) -> HTTPException:
    if isinstance(exc, InvalidTarget | ConfigError):
        return HTTPException(400, str(exc))
    if isinstance(exc, PermissionDenied):
        return HTTPException(403, f"NATS refused the dashboard's credentials: {exc}")
    if isinstance(exc, NotProvisioned | ConnectionFailed):
        return HTTPException(503, str(exc))
    if isinstance(exc, MeshTimeout):
        return HTTPException(504, str(exc))
    return HTTPException(502, str(exc))


class Commands:
    """Kill and resume for every dashboard user through one operator client on the dashboard's connection.

    The audit actor is the dashboard user (``dashboard:<user>``), passed with each command, never
    the NATS user the connection logged in as.
    """

    def __init__(self, conn: Connection, *, wait: float = 2.0) -> None:
        self.conn = conn
        self.wait = wait
        self._client: AsyncMesh | None = None

    async def _mesh(self) -> AsyncMesh:
        if self._client is None:
            self._client = await AsyncMesh(connection=self.conn, name="mesh-dashboard").connect()
        return self._client

    async def run(
        self, action: Literal["kill", "resume"], request: CommandRequest, actor: str
    ) -> dict[str, Any]:
        try:
            target = parse_target(request.target, request.instance)
        except MeshError as exc:
            raise _http_error(exc) from exc
        if action == "kill" and str(target) == ALL and request.confirm != STOP_EVERYTHING:
            raise HTTPException(400, f"stopping every agent needs the typed confirmation {STOP_EVERYTHING!r}")
        mesh = await self._mesh()
        log.info("dashboard command", action=action, target=str(target), actor=actor, reason=request.reason)
        try:
            if action == "kill":
                kill = await mesh.kill(
                    target, reason=request.reason, grace=request.grace, wait=self.wait, actor=actor
                )
                out = kill.model_dump(mode="json")
                out.update(action="kill", acked=kill.acked)
                return out
            resume = await mesh.resume(target, reason=request.reason, wait=self.wait, actor=actor)
            out = resume.model_dump(mode="json")
            out.update(action="resume", acked=resume.acked, complete=resume.complete)
            return out
        except MeshError as exc:
            log.warning("dashboard command failed", action=action, target=str(target), error=str(exc))
            raise _http_error(exc) from exc

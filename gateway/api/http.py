"""Request plumbing for the API: bodies into models (413, 422), errors into JSON, nothing raised out."""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.errors import BadTarget, GatewayError, Invalid, NotFoundError, RateLimited, Unavailable
from gateway.formats import api_error_body
from gateway.inbound import read_body
from mesh.errors import InvalidTarget, MeshError, NotFound, PermissionDenied

__all__ = ["handler", "parse_body", "query_bool", "query_float", "query_int", "reply"]

log = structlog.get_logger("gateway.api")

M = TypeVar("M", bound=BaseModel)
Handler = Callable[[Request], Awaitable[Response]]


def reply(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(data, status_code=status, headers=headers)


def _field(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) or "body"


async def parse_body(request: Request, model: type[M], limit: int, *, empty_ok: bool = False) -> M:
    raw = await read_body(request, limit)
    try:
        return model.model_validate_json(raw)  # the fast path: one pass, in pydantic's core
    except ValidationError:
        pass  # parsed again below, for an error that names the field
    if not raw.strip():
        if empty_ok:
            return model()
        raise Invalid("the body is empty: send a JSON object", field="body")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise Invalid("the body is not JSON: send a JSON object", field="body") from None
    if not isinstance(data, dict):
        raise Invalid(f"the body must be a JSON object, not {type(data).__name__}", field="body")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = _field(tuple(first.get("loc", ())))
        msg = "unknown field" if first.get("type") == "extra_forbidden" else first.get("msg", "invalid")
        raise Invalid(f"{where}: {msg}", field=where) from None


def query_float(request: Request, name: str, default: float, lo: float, hi: float) -> float:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise Invalid(f"{name}: must be a number of seconds", field=name) from None
    if not lo <= value <= hi:
        raise Invalid(f"{name}: must be between {lo:g} and {hi:g}", field=name)
    return value


def query_int(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not lo <= int(raw) <= hi:
        raise Invalid(f"{name}: must be a whole number from {lo} to {hi}", field=name)
    return int(raw)


def query_bool(request: Request, name: str) -> bool | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if raw.lower() in ("true", "1", "yes"):
        return True
    if raw.lower() in ("false", "0", "no"):
        return False
    raise Invalid(f"{name}: must be true or false", field=name)


def to_api_error(exc: Exception) -> GatewayError | None:
    """The API error a mesh error means; None for what is not ours (a bug: 500)."""
    if isinstance(exc, GatewayError):
        return exc
    if isinstance(exc, InvalidTarget):
        return BadTarget(str(exc), part=exc.part, value=exc.value[:200])
    if isinstance(exc, NotFound):
        return NotFoundError(str(exc))
    if isinstance(exc, PermissionDenied):
        return Unavailable(
            f"{exc}: the gateway's NATS user lacks this right; give the API a NATS login for the role "
            "([api.nats.operator] / [api.nats.agent] in the gateway config, see docs/http-api.md)"
        )
    if isinstance(exc, MeshError):
        return Unavailable(f"NATS could not do it right now: {exc}")
    return None


def handler(on_error: Callable[[GatewayError], None]) -> Callable[[Handler], Handler]:
    """Wrap a route: every failure becomes a JSON error (counted by ``on_error``), never a crash."""

    def wrap(fn: Handler) -> Handler:
        @functools.wraps(fn)
        async def run(request: Request) -> Response:
            try:
                return await fn(request)
            except Exception as exc:
                err = to_api_error(exc)
                if err is None:
                    log.exception("API request failed", route=request.url.path)
                    return reply(
                        {"error": {"code": "internal_error", "message": "internal error (logged)"}}, 500
                    )
                on_error(err)
                headers = None
                if isinstance(err, RateLimited):
                    headers = {"Retry-After": str(max(1, round(float(err.detail.get("retry_after", 1)))))}
                return reply(api_error_body(err), err.status, headers)

        return run

    return wrap

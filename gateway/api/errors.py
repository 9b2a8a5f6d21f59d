"""API errors: each names what is wrong (the field, the right, the target part) and its HTTP status."""

from __future__ import annotations

from typing import Any

from gateway.errors import GatewayError

__all__ = [
    "ApiError",
    "BadTarget",
    "Conflict",
    "Forbidden",
    "Invalid",
    "NotFoundError",
    "RateLimited",
    "Unavailable",
    "error_body",
]


class ApiError(GatewayError):
    """An API request refused; ``detail`` goes into the error body next to code and message."""

    status = 400
    kind = "bad_request"

    def __init__(self, message: str, **detail: Any) -> None:
        self.detail = {k: v for k, v in detail.items() if v is not None}
        super().__init__(message)


class Invalid(ApiError):
    """A body or query parameter that is not what the route takes (422), naming the field."""

    status = 422
    kind = "invalid_field"


class BadTarget(ApiError):
    """A target URI or instance id that does not parse (400), naming the bad part."""

    status = 400
    kind = "invalid_target"


class Forbidden(ApiError):
    """A key whose role lacks the right the route needs (403), naming the right."""

    status = 403
    kind = "forbidden"


class NotFoundError(ApiError):
    status = 404
    kind = "not_found"


class Conflict(ApiError):
    """A request that does not fit the current state (an ack with no kill in force): nothing done."""

    status = 409
    kind = "conflict"


class RateLimited(ApiError):
    status = 429
    kind = "rate_limited"


class Unavailable(ApiError):
    """NATS could not do what the request needs right now (503): nothing was applied."""

    status = 503
    kind = "unavailable"


def error_body(exc: GatewayError) -> dict[str, Any]:
    """``{"error": {"code", "message", ...}}``: the AXME client and ours both read ``error.message``."""
    body: dict[str, Any] = {"code": exc.kind, "message": str(exc)}
    if isinstance(exc, ApiError):
        body.update(exc.detail)
    return {"error": body}

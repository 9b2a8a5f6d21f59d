"""Gateway and API errors, all under ``mesh.errors.MeshError``; each knows its HTTP status.

::

    MeshError
    └── GatewayError                        a request the gateway cannot serve
        ├── UnknownKey (PermissionError)    no key, a malformed key, or one the gateway does not know (401)
        │   └── RevokedKey                  a key that was revoked (401)
        ├── InstanceNotAllowed              X-Mesh-Instance outside what the key allows (403)
        ├── Refused                         a kill record in force matches, or the gateway fails closed (403)
        ├── BadRequest (ValueError)         a body that is not what the route takes (400)
        │   └── BodyTooLarge                a body over the size limit (413)
        ├── NoUpstream (LookupError)        no upstream configured for the route or the key (404)
        ├── UpstreamFailed                  the upstream hung, reset or could not be reached (502/504)
        └── ApiError                        an HTTP API request refused; ``detail`` names what is wrong
            ├── Invalid                     a body or query parameter, naming the field (422)
            ├── BadTarget                   a target URI or instance id, naming the bad part (400)
            ├── Forbidden                   the key's role lacks the right, naming it (403)
            ├── NotFoundError               no such record (404)
            ├── Conflict                    does not fit the current state: nothing done (409)
            ├── RateLimited                 over the key's rate (429)
            └── Unavailable                 NATS could not do it right now: nothing applied (503)

Each class states its ``status`` and ``kind`` (the error code in bodies and metrics) as class
keywords. Messages never hold a credential: keys are named by their short id, upstreams by their name.
"""

from __future__ import annotations

from typing import Any

from mesh.errors import MeshError
from mesh.protocol.models import KillRecord

__all__ = [
    "ApiError",
    "BadRequest",
    "BadTarget",
    "BodyTooLarge",
    "Conflict",
    "Forbidden",
    "GatewayError",
    "InstanceNotAllowed",
    "Invalid",
    "NoUpstream",
    "NotFoundError",
    "RateLimited",
    "Refused",
    "RevokedKey",
    "Unavailable",
    "UnknownKey",
    "UpstreamFailed",
]


class GatewayError(MeshError):
    """A request the gateway cannot serve; ``status`` is the HTTP status it answers with."""

    status = 500
    kind = "gateway_error"

    def __init_subclass__(cls, *, status: int | None = None, kind: str | None = None, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if status is not None:
            cls.status = status
        if kind is not None:
            cls.kind = kind


class UnknownKey(GatewayError, PermissionError, status=401, kind="invalid_api_key"):
    """No virtual key, a malformed one, or one not in the keys bucket."""


class RevokedKey(UnknownKey):
    """A virtual key that was revoked; ``key_id`` is its short id (never the key)."""

    def __init__(self, key_id: str) -> None:
        self.key_id = key_id
        super().__init__(f"virtual key {key_id} was revoked")


class InstanceNotAllowed(GatewayError, status=403, kind="instance_not_allowed"):
    """``X-Mesh-Instance`` names an instance the key does not allow, or is not a valid id."""


class Refused(GatewayError, status=403, kind="agent_killed"):
    """The agent may not act: ``record`` is the kill record in force (None when failing closed)."""

    def __init__(self, message: str, record: KillRecord | None = None, key: str | None = None) -> None:
        self.record = record
        self.key = key
        super().__init__(message)


class BadRequest(GatewayError, ValueError, status=400, kind="invalid_request_error"):
    """A body that is not JSON, or not the shape the route takes."""


class BodyTooLarge(BadRequest, status=413, kind="request_too_large"):
    """A body over ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"request body larger than the gateway's {limit}-byte limit")


class NoUpstream(GatewayError, LookupError, status=404, kind="no_upstream"):
    """No upstream is configured for this route (or the key's upstream is of another kind)."""


class UpstreamFailed(GatewayError, kind="upstream_error"):
    """The upstream did not answer in time (504), or reset or refused the connection (502)."""

    def __init__(self, upstream: str, detail: str, status: int = 502) -> None:
        self.upstream = upstream
        self.status = status
        super().__init__(f"upstream {upstream!r} failed: {detail}")


class ApiError(GatewayError, status=400, kind="bad_request"):
    """An API request refused; ``detail`` goes into the error body next to code and message."""

    def __init__(self, message: str, **detail: Any) -> None:
        self.detail = {k: v for k, v in detail.items() if v is not None}
        super().__init__(message)


class Invalid(ApiError, status=422, kind="invalid_field"):
    """A body or query parameter that is not what the route takes (422), naming the field."""


class BadTarget(ApiError, status=400, kind="invalid_target"):
    """A target URI or instance id that does not parse (400), naming the bad part."""


class Forbidden(ApiError, status=403, kind="forbidden"):
    """A key whose role lacks the right the route needs (403), naming the right."""


class NotFoundError(ApiError, status=404, kind="not_found"):
    """No record with that name or id (404)."""


class Conflict(ApiError, status=409, kind="conflict"):
    """A request that does not fit the current state (an ack with no kill in force): nothing done."""


class RateLimited(ApiError, status=429, kind="rate_limited"):
    """A key over its request rate (429); ``detail`` holds ``retry_after``."""


class Unavailable(ApiError, status=503, kind="unavailable"):
    """NATS could not do what the request needs right now (503): nothing was applied."""

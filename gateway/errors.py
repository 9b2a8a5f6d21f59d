"""Gateway errors, all under ``mesh.errors.MeshError``; each knows its HTTP status.

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
        └── UpstreamFailed                  the upstream hung, reset or could not be reached (502/504)

Messages never hold a credential: keys are named by their short id, upstreams by their name.
"""

from __future__ import annotations

from mesh.errors import MeshError
from mesh.protocol.models import KillRecord

__all__ = [
    "BadRequest",
    "BodyTooLarge",
    "GatewayError",
    "InstanceNotAllowed",
    "NoUpstream",
    "Refused",
    "RevokedKey",
    "UnknownKey",
    "UpstreamFailed",
]


class GatewayError(MeshError):
    """A request the gateway cannot serve; ``status`` is the HTTP status it answers with."""

    status = 500
    kind = "gateway_error"


class UnknownKey(GatewayError, PermissionError):
    """No virtual key, a malformed one, or one not in the keys bucket."""

    status = 401
    kind = "invalid_api_key"


class RevokedKey(UnknownKey):
    """A virtual key that was revoked; ``key_id`` is its short id (never the key)."""

    def __init__(self, key_id: str) -> None:
        self.key_id = key_id
        super().__init__(f"virtual key {key_id} was revoked")


class InstanceNotAllowed(GatewayError):
    """``X-Mesh-Instance`` names an instance the key does not allow, or is not a valid id."""

    status = 403
    kind = "instance_not_allowed"


class Refused(GatewayError):
    """The agent may not act: ``record`` is the kill record in force (None when failing closed)."""

    status = 403
    kind = "agent_killed"

    def __init__(self, message: str, record: KillRecord | None = None, key: str | None = None) -> None:
        self.record = record
        self.key = key
        super().__init__(message)


class BadRequest(GatewayError, ValueError):
    """A body that is not JSON, or not the shape the route takes."""

    status = 400
    kind = "invalid_request_error"


class BodyTooLarge(BadRequest):
    """A body over ``limit`` bytes."""

    status = 413
    kind = "request_too_large"

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"request body larger than the gateway's {limit}-byte limit")


class NoUpstream(GatewayError, LookupError):
    """No upstream is configured for this route (or the key's upstream is of another kind)."""

    status = 404
    kind = "no_upstream"


class UpstreamFailed(GatewayError):
    """The upstream did not answer in time (504), or reset or refused the connection (502)."""

    kind = "upstream_error"

    def __init__(self, upstream: str, detail: str, status: int = 502) -> None:
        self.upstream = upstream
        self.status = status
        super().__init__(f"upstream {upstream!r} failed: {detail}")

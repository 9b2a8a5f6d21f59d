"""Error bodies in each protocol's own format (the official clients raise readable errors), and the API's."""

from __future__ import annotations

import json
from typing import Any, Literal

from gateway.errors import ApiError, GatewayError, Refused

__all__ = ["Protocol", "api_error_body", "error_body", "jsonrpc_error", "mesh_details", "sse_error_event"]

Protocol = Literal["openai", "anthropic"]

#: JSON-RPC codes: the server-defined range for a refused call; the standard ones otherwise.
JSONRPC_REFUSED = -32001
JSONRPC_PARSE_ERROR = -32700
JSONRPC_INVALID_REQUEST = -32600
JSONRPC_INTERNAL = -32603

#: Anthropic's error types, by HTTP status (what its client maps to exception classes).
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    502: "api_error",
    504: "api_error",
}


def mesh_details(exc: GatewayError) -> dict[str, Any]:
    """The machine-readable part: the error kind and, for a refusal, the record that caused it."""
    out: dict[str, Any] = {"kind": exc.kind}
    if isinstance(exc, Refused):
        out["fail_closed"] = exc.record is None
        if exc.record is not None:
            r = exc.record
            out.update(
                key=exc.key,
                target=r.target,
                instance=r.instance,
                actor=r.actor,
                reason=r.reason,
                issued_at=r.issued_at.isoformat(),
                command_id=r.command_id,
            )
    return out


def error_body(protocol: Protocol, exc: GatewayError) -> dict[str, Any]:
    if protocol == "anthropic":
        return {
            "type": "error",
            "error": {"type": _ANTHROPIC_TYPES.get(exc.status, "api_error"), "message": str(exc)},
            "mesh": mesh_details(exc),
        }
    return {
        "error": {
            "message": str(exc),
            "type": exc.kind,
            "param": None,
            "code": exc.kind,
            "mesh": mesh_details(exc),
        }
    }


def api_error_body(exc: GatewayError) -> dict[str, Any]:
    """``{"error": {"code", "message", ...}}``: the AXME client and ours both read ``error.message``."""
    body: dict[str, Any] = {"code": exc.kind, "message": str(exc)}
    if isinstance(exc, ApiError):
        body.update(exc.detail)
    return {"error": body}


def sse_error_event(protocol: Protocol, exc: GatewayError) -> bytes:
    """The last event of a stream cut by a kill: each client raises on it."""
    body = error_body(protocol, exc)
    if protocol == "anthropic":
        return b"event: error\ndata: " + json.dumps(body).encode() + b"\n\n"
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def jsonrpc_error(
    request_id: Any, code: int, message: str, data: dict[str, Any] | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": request_id, "error": error}

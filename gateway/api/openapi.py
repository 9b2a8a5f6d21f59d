"""The OpenAPI 3.1 document of the API, generated from the pydantic models the routes use."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from gateway.api import models as m
from gateway.api.axme_routes import AxmeHeartbeatIn

__all__ = ["openapi_document"]

REF = "#/components/schemas/{model}"

_AGENT_ERRORS = (401, 403, 413, 422, 429, 503)
_OPERATOR_ERRORS = (400, 401, 403, 404, 413, 422, 503)


def _q(name: str, kind: str, doc: str, *, required: bool = False, in_: str = "query") -> dict[str, Any]:
    return {"name": name, "in": in_, "required": required, "description": doc, "schema": {"type": kind}}


def _ref(model: type[BaseModel] | str) -> dict[str, str]:
    return {"$ref": REF.format(model=model if isinstance(model, str) else model.__name__)}


def _op(
    summary: str,
    ok: dict[str, Any],
    errors: tuple[int, ...],
    *,
    body: type[BaseModel] | None = None,
    params: list[dict[str, Any]] | None = None,
    security: str = "agentKey",
    extra_ok: dict[str, Any] | None = None,
) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": ok}}
    if extra_ok:
        content.update(extra_ok)
    op: dict[str, Any] = {
        "summary": summary,
        "security": [{security: []}],
        "responses": {
            "200": {"description": "OK", "content": content},
            **{
                str(code): {
                    "description": "error",
                    "content": {"application/json": {"schema": _ref(m.ErrorOut)}},
                }
                for code in errors
            },
        },
    }
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(body)}}}
    if params:
        op["parameters"] = params
    return op


def _arr(model: type[BaseModel]) -> dict[str, Any]:
    return {"type": "array", "items": _ref(model)}


def _axme(extra: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": ["ok", *extra], "properties": {"ok": {"const": True}, **extra}}


MODELS: list[type[BaseModel]] = [
    m.HeartbeatIn, m.ControlOut, m.RecordOut, m.CheckpointIn, m.CheckpointOut, m.HaltedIn, m.Ack,
    m.KillIn, m.ResumeIn, m.KillReportOut, m.ResumeReportOut, m.InstanceOut, m.AgentStatusOut,
    m.EventOut, m.PolicyOut, m.UsageOut, m.ErrorOut, AxmeHeartbeatIn, m.AxmeHeartbeatOut,
]  # fmt: skip


def _paths() -> dict[str, Any]:
    pattern = _q("pattern", "string", "agent://ORG/ENV/NAME, any segment may be *")
    since = _q("since", "string", "30s, 15m, 1h, 2d or an ISO time")
    inst = _q("instance", "string", "the instance id, when the key does not fix one")
    address = _q("address_id", "string", "ORG.ENV.NAME[.INSTANCE]", required=True, in_="path")
    control = _ref(m.ControlOut)
    axme_agent = {"type": "object", "required": ["address_id", "agent_uri", "health_status", "instances"]}
    agent, ops = _AGENT_ERRORS, _OPERATOR_ERRORS
    sse = {"text/event-stream": {"schema": {"type": "string"}}}
    table: list[tuple[str, str, str, dict[str, Any], tuple[int, ...], dict[str, Any]]] = [
        ("/api/v1/heartbeat", "post", "Heartbeat; answers whether the instance may act", control, agent,
         {"body": m.HeartbeatIn}),
        ("/api/v1/control", "get", "Long-poll: returns when the kill state differs from `killed`", control,
         agent, {"params": [_q("killed", "boolean", "the state the caller knows; omitted: answer at once"),
                            _q("wait", "number", "seconds to wait at most (30 with `killed`)"), inst]}),
        ("/api/v1/checkpoint", "post", "Save the instance's checkpoint", _ref(m.CheckpointOut), agent,
         {"body": m.CheckpointIn}),
        ("/api/v1/checkpoint", "get", "The instance's last checkpoint (state null if none)",
         _ref(m.CheckpointOut), agent, {"params": [inst]}),
        ("/api/v1/halted", "post", "Acknowledge the kills in force (metadata, checkpoint)", _ref(m.Ack),
         (*agent, 409), {"body": m.HaltedIn}),
        ("/api/v1/kill", "post", "Kill; report who halted (`mesh kill --wait`)", _ref(m.KillReportOut),
         ops, {"body": m.KillIn}),
        ("/api/v1/resume", "post", "Resume a target (`mesh resume`)", _ref(m.ResumeReportOut), ops,
         {"body": m.ResumeIn}),
        ("/api/v1/agents", "get", "Instances and status (`mesh list --json`)", _arr(m.InstanceOut), ops,
         {"params": [pattern, _q("status", "string", "only this status")]}),
        ("/api/v1/status", "get", "One agent (`mesh status --json`)", _ref(m.AgentStatusOut), ops,
         {"params": [_q("target", "string", "agent://ORG/ENV/NAME", required=True)]}),
        ("/api/v1/events", "get", "Audit events, oldest first (`mesh events --json`)", _arr(m.EventOut), ops,
         {"extra_ok": sse, "params": [pattern, since, _q("type", "string", "comma-separated event types"),
                                      _q("limit", "integer", "the newest N (default 1000)"),
                                      _q("follow", "boolean", "keep streaming as server-sent events")]}),
        ("/api/v1/policies", "get", "Policies (`mesh policy list --json`)", _arr(m.PolicyOut), ops, {}),
        ("/api/v1/usage", "get", "Usage and budgets (`mesh usage --json`)", _ref(m.UsageOut), ops,
         {"params": [pattern, since]}),
        ("/v1/mesh/heartbeat", "post", "AXME heartbeat", _ref(m.AxmeHeartbeatOut), agent,
         {"body": AxmeHeartbeatIn}),
        ("/v1/mesh/agents", "get", "AXME list_agents",
         _axme({"agents": {"type": "array", "items": axme_agent}, "total": {"type": "integer"}}), ops, {}),
        ("/v1/mesh/agents/{address_id}", "get", "AXME get_agent", _axme({"agent": axme_agent}), ops,
         {"params": [address]}),
        ("/v1/mesh/agents/{address_id}/kill", "post", "AXME kill", _axme({"report": _ref(m.KillReportOut)}),
         ops, {"params": [address]}),
        ("/v1/mesh/agents/{address_id}/resume", "post", "AXME resume",
         _axme({"report": _ref(m.ResumeReportOut)}), ops, {"params": [address]}),
        ("/v1/mesh/events", "get", "AXME list_events, newest first", _axme({"events": _arr(m.EventOut)}), ops,
         {}),
    ]  # fmt: skip
    paths: dict[str, Any] = {
        "/api/v1/openapi.json": {
            "get": {
                "summary": "This document",
                "security": [],
                "responses": {
                    "200": {
                        "description": "OK",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        }
    }
    for path, method, summary, ok, errors, kw in table:
        security = "agentKey" if errors is agent or 409 in errors else "apiKey"
        paths.setdefault(path, {})[method] = _op(summary, ok, errors, security=security, **kw)
    return paths


def openapi_document() -> dict[str, Any]:
    modes = [(model, "validation" if model.__name__.endswith("In") else "serialization") for model in MODELS]
    _, defs = models_json_schema(modes, ref_template=REF)  # type: ignore[arg-type]
    return {
        "openapi": "3.1.0",
        "info": {"title": "agent-mesh gateway API", "version": "1"},
        "paths": _paths(),
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {
                "agentKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a gateway virtual key, mk-...",
                },
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "an operator/auditor key, mo-...",
                },
            },
        },
    }

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
                str(code): {"description": "error", "content": {"application/json": {"schema": _ref(m.ErrorOut)}}}
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


def openapi_document() -> dict[str, Any]:
    modes = [(model, "validation" if model.__name__.endswith("In") else "serialization") for model in MODELS]
    _, defs = models_json_schema(modes, ref_template=REF)  # type: ignore[arg-type]
    schemas = defs.get("$defs", {})
    pattern = _q("pattern", "string", "agent://ORG/ENV/NAME, any segment may be *")
    since = _q("since", "string", "30s, 15m, 1h, 2d or an ISO time")
    inst = _q("instance", "string", "the instance id, when the key does not fix one")
    control = _ref(m.ControlOut)
    axme_agent = {"type": "object", "required": ["address_id", "agent_uri", "health_status", "instances"]}
    paths: dict[str, Any] = {
        "/api/v1/heartbeat": {"post": _op("Heartbeat; answers whether the instance may act", control,
                                          _AGENT_ERRORS, body=m.HeartbeatIn)},
        "/api/v1/control": {"get": _op("Long-poll: returns when the kill state differs from `killed`", control,
                                       _AGENT_ERRORS, params=[
            _q("killed", "boolean", "the state the caller knows; omitted: answer at once"),
            _q("wait", "number", "seconds to wait at most (default 30 with `killed`)"), inst])},
        "/api/v1/checkpoint": {
            "post": _op("Save the instance's checkpoint", _ref(m.CheckpointOut), _AGENT_ERRORS, body=m.CheckpointIn),
            "get": _op("The instance's last checkpoint (state null if none)", _ref(m.CheckpointOut),
                       _AGENT_ERRORS, params=[inst]),
        },
        "/api/v1/halted": {"post": _op("Acknowledge the kill records in force (with metadata, checkpoint)",
                                       _ref(m.Ack), (*_AGENT_ERRORS, 409), body=m.HaltedIn)},
        "/api/v1/kill": {"post": _op("Kill a target and report who halted (like `mesh kill --wait`)",
                                     _ref(m.KillReportOut), _OPERATOR_ERRORS, body=m.KillIn, security="apiKey")},
        "/api/v1/resume": {"post": _op("Resume a target", _ref(m.ResumeReportOut), _OPERATOR_ERRORS,
                                       body=m.ResumeIn, security="apiKey")},
        "/api/v1/agents": {"get": _op("Instances and their status (`mesh list --json`)", _arr(m.InstanceOut),
                                      _OPERATOR_ERRORS, security="apiKey",
                                      params=[pattern, _q("status", "string", "only this status")])},
        "/api/v1/status": {"get": _op("One agent (`mesh status --json`)", _ref(m.AgentStatusOut), _OPERATOR_ERRORS,
                                      security="apiKey",
                                      params=[_q("target", "string", "agent://ORG/ENV/NAME", required=True)])},
        "/api/v1/events": {"get": _op("Audit events, oldest first (`mesh events --json`)", _arr(m.EventOut),
                                      _OPERATOR_ERRORS, security="apiKey",
                                      extra_ok={"text/event-stream": {"schema": {"type": "string"}}},
                                      params=[pattern, since, _q("type", "string", "comma-separated event types"),
                                              _q("limit", "integer", "the newest N (default 1000)"),
                                              _q("follow", "boolean", "keep streaming as server-sent events")])},
        "/api/v1/policies": {"get": _op("Policies (`mesh policy list --json`)", _arr(m.PolicyOut), _OPERATOR_ERRORS,
                                        security="apiKey")},
        "/api/v1/usage": {"get": _op("Usage and budgets (`mesh usage --json`)", _ref(m.UsageOut), _OPERATOR_ERRORS,
                                     security="apiKey", params=[pattern, since])},
        "/v1/mesh/heartbeat": {"post": _op("AXME heartbeat", _ref(m.AxmeHeartbeatOut), _AGENT_ERRORS,
                                           body=AxmeHeartbeatIn)},
        "/v1/mesh/agents": {"get": _op("AXME list_agents", _axme({"agents": {"type": "array", "items": axme_agent},
                                                                  "total": {"type": "integer"}}),
                                       _OPERATOR_ERRORS, security="apiKey")},
        "/v1/mesh/agents/{address_id}": {"get": _op("AXME get_agent", _axme({"agent": axme_agent}),
                                                    _OPERATOR_ERRORS, security="apiKey",
                                                    params=[_q("address_id", "string", "ORG.ENV.NAME[.INSTANCE]",
                                                               required=True, in_="path")])},
        "/v1/mesh/agents/{address_id}/kill": {"post": _op("AXME kill", _axme({"report": _ref(m.KillReportOut)}),
                                                          _OPERATOR_ERRORS, security="apiKey")},
        "/v1/mesh/agents/{address_id}/resume": {"post": _op("AXME resume",
                                                            _axme({"report": _ref(m.ResumeReportOut)}),
                                                            _OPERATOR_ERRORS, security="apiKey")},
        "/v1/mesh/events": {"get": _op("AXME list_events, newest first", _axme({"events": _arr(m.EventOut)}),
                                       _OPERATOR_ERRORS, security="apiKey")},
    }  # fmt: skip
    return {
        "openapi": "3.1.0",
        "info": {"title": "agent-mesh gateway API", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "agentKey": {"type": "http", "scheme": "bearer", "description": "a gateway virtual key, mk-..."},
                "apiKey": {"type": "http", "scheme": "bearer", "description": "an operator/auditor key, mo-..."},
            },
        },
    }

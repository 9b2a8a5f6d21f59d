"""HTTP API test helpers: a running gateway with the API, keys, and a client that validates every
response against the OpenAPI document the server itself serves."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import jsonschema
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from gateway.api.apikeys import create_api_key
from gateway.config import GatewayConfig
from gateway.keystore import create_key
from gateway.service import bound_port, running_gateway
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection

AGENT = "agent://acme/prod/mailer"


class OpenApiValidator:
    """Checks a response (method, path, status, JSON body) against the served document."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.registry: Registry[Any] = Registry().with_resource(
            "urn:api", DRAFT202012.create_resource(document)
        )
        self.paths = [
            (re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", p) + "$"), p) for p in document["paths"]
        ]
        self.checked = 0

    def schema_for(self, method: str, path: str, status: int, media: str) -> dict[str, Any]:
        template = next((t for rx, t in self.paths if rx.match(path)), None)
        assert template is not None, f"{path} is not in the OpenAPI document"
        op = self.document["paths"][template].get(method.lower())
        assert op is not None, f"{method} {template} is not in the OpenAPI document"
        resp = op["responses"].get(str(status))
        assert resp is not None, f"{method} {template} answered {status}, which the document does not list"
        content = resp["content"].get(media)
        assert content is not None, f"{method} {template} {status}: media type {media} not documented"
        return content["schema"]  # type: ignore[no-any-return]

    def validate(self, response: httpx.Response) -> None:
        req = response.request
        media = response.headers.get("content-type", "").split(";")[0]
        schema = self.schema_for(req.method, req.url.path, response.status_code, media)
        if media == "application/json":
            body = response.json()
            rewritten = json.loads(json.dumps(schema).replace('"#/components', '"urn:api#/components'))
            jsonschema.Draft202012Validator(rewritten, registry=self.registry).validate(body)
        self.checked += 1


async def validating_client(base_url: str) -> httpx.AsyncClient:
    """An httpx client whose every response under ``base_url`` is checked against the served document."""
    async with httpx.AsyncClient() as probe:
        validator = OpenApiValidator((await probe.get(base_url + "/api/v1/openapi.json")).json())

    async def check(response: httpx.Response) -> None:
        await response.aread()
        validator.validate(response)

    return httpx.AsyncClient(timeout=30.0, event_hooks={"response": [check]})


@dataclass
class ApiGateway:
    url: str
    conn: Connection
    settings: Settings
    client: httpx.AsyncClient
    validator: OpenApiValidator
    operator_key: str = ""
    auditor_key: str = ""
    keys: dict[str, str] = field(default_factory=dict)

    async def agent_key(self, agent: str = AGENT, instance: str | None = None) -> str:
        key, _ = await create_key(self.conn, agent, instance=instance, upstream=None, actor="tester")
        return key

    async def request(self, method: str, path: str, key: str | None = None, **kw: Any) -> httpx.Response:
        headers = dict(kw.pop("headers", {}) or {})
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        response = await self.client.request(method, self.url + path, headers=headers, **kw)
        self.validator.validate(response)
        return response

    async def post(self, path: str, key: str | None = None, **kw: Any) -> httpx.Response:
        return await self.request("POST", path, key, **kw)

    async def get(self, path: str, key: str | None = None, **kw: Any) -> httpx.Response:
        return await self.request("GET", path, key, **kw)


@contextlib.asynccontextmanager
async def api_gateway(
    settings: Settings, conn: Connection, config: GatewayConfig | None = None
) -> AsyncIterator[ApiGateway]:
    config = config or GatewayConfig(port=0)
    async with running_gateway(settings, config, meter_interval=0.5) as (_gw, server):
        url = f"http://127.0.0.1:{bound_port(server)}"
        async with httpx.AsyncClient(timeout=30.0) as client:
            doc = (await client.get(url + "/api/v1/openapi.json")).json()
            g = ApiGateway(url, conn, settings, client, OpenApiValidator(doc))
            g.operator_key, _ = await create_api_key(conn, "operator", "alice", actor="tester")
            g.auditor_key, _ = await create_api_key(conn, "auditor", "siem", actor="tester")
            yield g

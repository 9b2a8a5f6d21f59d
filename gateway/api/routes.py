"""All API routes, and the OpenAPI document at ``/api/v1/openapi.json``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from gateway.api.agent_routes import agent_routes
from gateway.api.axme_routes import axme_routes
from gateway.api.context import Api
from gateway.api.openapi import openapi_document
from gateway.api.operator_routes import operator_routes

__all__ = ["api_routes"]


def api_routes(api: Api) -> list[BaseRoute]:
    document = openapi_document()

    async def openapi(_request: Request) -> JSONResponse:
        return JSONResponse(document)

    return [
        Route("/api/v1/openapi.json", openapi, methods=["GET"]),
        *agent_routes(api),
        *operator_routes(api),
        *axme_routes(api),
    ]

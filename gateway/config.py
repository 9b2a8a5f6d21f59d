"""Gateway configuration: listen address, limits, and the upstreams with their real credentials.

From a TOML file (``--config`` or ``MESH_GATEWAY_CONFIG``); credentials only by reference, an
environment variable (``api_key_env``) or a file (``api_key_file``), never inline, so the file can
be committed and logged. See docs/gateway.md for the format.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from gateway.api.config import ApiConfig
from mesh.errors import ConfigError

__all__ = ["GatewayConfig", "Kind", "Upstream", "load_config"]

Kind = Literal["openai", "anthropic", "mcp"]
DEFAULT_PORT = 8790


class Upstream(BaseModel):
    """One upstream: an OpenAI-compatible or Anthropic API, or a streamable-HTTP MCP server."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
    kind: Kind
    #: What the official client would take as ``base_url`` (OpenAI: with ``/v1``; Anthropic: without).
    base_url: str
    api_key_env: str | None = None
    api_key_file: Path | None = None
    #: Resolved at load time; repr hidden, never logged.
    api_key: SecretStr | None = Field(default=None, exclude=True)

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")


class GatewayConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=DEFAULT_PORT, ge=0, le=65535)
    #: Seconds without NATS after which every request is refused; None serves on regardless.
    fail_closed_after: float | None = Field(default=10.0, gt=0)
    #: The instance a request acts as when neither its key nor X-Mesh-Instance names one. Give
    #: each replica its own when several gateways serve one agent: each reports its own totals.
    default_instance: str = Field(default="gateway", pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
    #: Port of the egress proxy (CONNECT and plain HTTP); None leaves it off.
    egress_port: int | None = Field(default=None, ge=0, le=65535)
    max_body_bytes: int = Field(default=8 * 1024 * 1024, gt=0)
    #: Seconds an upstream may take to connect and to send each chunk.
    connect_timeout: float = Field(default=5.0, gt=0)
    read_timeout: float = Field(default=300.0, gt=0)
    #: The price table (TOML); None uses gateway/prices.toml from the repo.
    prices: Path | None = None
    upstreams: dict[str, Upstream] = Field(default_factory=dict)
    #: The HTTP API (/api/v1, /v1/mesh): see docs/http-api.md.
    api: ApiConfig = Field(default_factory=ApiConfig)

    def default_upstream(self, kind: Kind) -> Upstream | None:
        """The upstream named like its kind, else the first of that kind."""
        named = self.upstreams.get(kind)
        if named is not None and named.kind == kind:
            return named
        return next((u for u in self.upstreams.values() if u.kind == kind), None)


def _resolve_key(up: dict[str, object], env: Mapping[str, str]) -> dict[str, object]:
    name = str(up.get("name"))
    if "api_key" in up:
        raise ConfigError(
            f"upstream {name}: put the credential in an environment variable (api_key_env) "
            "or a file (api_key_file), not in the config file"
        )
    if up.get("api_key_env"):
        var = str(up["api_key_env"])
        if not env.get(var):
            raise ConfigError(f"upstream {name}: environment variable {var} (api_key_env) is not set")
        up["api_key"] = env[var]
    elif up.get("api_key_file"):
        path = Path(str(up["api_key_file"]))
        try:
            up["api_key"] = path.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"upstream {name}: cannot read api_key_file {path}: {exc.strerror}") from None
    return up


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """The TOML file at ``path``; a ConfigError naming ``what`` (e.g. "price table") if unreadable."""
    try:
        return tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{what} {path} is not valid TOML: {exc}") from None


def load_config(
    path: Path | None = None, env: Mapping[str, str] | None = None, **overrides: object
) -> GatewayConfig:
    """Read the TOML file (``[gateway]`` table and ``[upstreams.NAME]`` tables); ``overrides`` win."""
    env = os.environ if env is None else env
    raw: dict[str, object] = {}
    if path is None and env.get("MESH_GATEWAY_CONFIG"):
        path = Path(env["MESH_GATEWAY_CONFIG"])
    if path is not None:
        data = read_toml(path, "gateway config")
        raw.update(data.get("gateway", {}))
        if "api" in data:
            raw["api"] = data["api"]
        ups = data.get("upstreams", {})
        if not isinstance(ups, dict):
            raise ConfigError(f"gateway config {path}: [upstreams] must be tables, [upstreams.NAME]")
        raw["upstreams"] = {n: _resolve_key({**u, "name": n}, env) for n, u in ups.items()}
    raw.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return GatewayConfig.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"invalid gateway config: {where}: {first['msg']}") from None

"""The ``[api]`` table of the gateway config: limits, and which NATS user each API role acts as."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from mesh.errors import ConfigError
from mesh.runtime.settings import Settings

__all__ = ["ApiConfig", "NatsLogin", "Role"]

Role = Literal["agent", "operator", "auditor"]


class NatsLogin(BaseModel):
    """A NATS user the API connects as for one role; the password by reference only."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    user: str = Field(min_length=1, max_length=128)
    password_env: str | None = None
    password_file: Path | None = None

    def settings(self, base: Settings, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        password: str | None = None
        if self.password_env:
            password = env.get(self.password_env) or None
            if password is None:
                raise ConfigError(
                    f"[api.nats] user {self.user}: {self.password_env} (password_env) is not set"
                )
        elif self.password_file:
            try:
                password = self.password_file.read_text().strip()
            except OSError as exc:
                raise ConfigError(
                    f"[api.nats] user {self.user}: cannot read password_file {self.password_file}: "
                    f"{exc.strerror}"
                ) from None
        return base.model_copy(update={"user": self.user, "password": password, "token": None, "creds": None})


class ApiConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Serve /api/v1 and /v1/mesh at all.
    enabled: bool = True
    #: Agent-route requests per second each key may make (a token bucket), and the burst above it.
    rate: float = Field(default=200.0, gt=0)
    burst: int = Field(default=400, gt=0)
    #: Larger API request bodies get 413 (checkpoints included).
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)
    #: The longest a kill may wait for acknowledgements, and a long-poll for a change.
    max_wait: float = Field(default=60.0, gt=0, le=600)
    #: Per role, the NATS user the API acts as (operator kills as `operator`, agents' checkpoints
    #: as `agent`...). A role not listed uses the gateway's own connection (enough in dev mode).
    nats: dict[Role, NatsLogin] = Field(default_factory=dict)

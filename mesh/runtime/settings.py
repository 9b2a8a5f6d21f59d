"""Settings from the environment, under the nats CLI's own variable names."""

from __future__ import annotations

import getpass
import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mesh.errors import ConfigError
from mesh.protocol.subjects import DEFAULT_PREFIX, Namespace

__all__ = ["DEFAULT_NATS_URL", "Settings"]

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"


class Settings(BaseModel):
    """How to reach NATS and which namespace to use.

    ====================  =====================================================
    ``NATS_URL``          server URL(s), comma-separated (default ``nats://127.0.0.1:4222``)
    ``NATS_USER``         user name, with ``NATS_PASSWORD``
    ``NATS_PASSWORD``     password
    ``NATS_TOKEN``        token authentication
    ``NATS_CREDS``        path to a ``.creds`` file (JWT + NKey)
    ``MESH_PREFIX``       subject/bucket prefix (default ``mesh``)
    ``MESH_ACTOR``        who you are, for the audit log (default: NATS user, else OS user)
    ====================  =====================================================
    """

    model_config = ConfigDict(frozen=True)

    nats_url: str = DEFAULT_NATS_URL
    user: str | None = None
    password: str | None = Field(default=None, repr=False)
    token: str | None = Field(default=None, repr=False)
    creds: Path | None = None
    prefix: str = DEFAULT_PREFIX
    actor: str | None = None
    connect_timeout: float = Field(default=3.0, gt=0)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Read the variables above from ``env`` (default ``os.environ``); ``overrides`` win."""
        env = os.environ if env is None else env
        values: dict[str, object] = {
            "nats_url": env.get("NATS_URL") or DEFAULT_NATS_URL,
            "user": env.get("NATS_USER") or None,
            "password": env.get("NATS_PASSWORD") or None,
            "token": env.get("NATS_TOKEN") or None,
            "creds": env.get("NATS_CREDS") or None,
            "prefix": env.get("MESH_PREFIX") or DEFAULT_PREFIX,
            "actor": env.get("MESH_ACTOR") or None,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            settings = cls.model_validate(values)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ConfigError(f"invalid setting {first['loc'][0]}: {first['msg']}") from exc
        settings.namespace  # noqa: B018 - validates the prefix early, with a clear error
        if settings.creds is not None and not settings.creds.is_file():
            raise ConfigError(f"NATS_CREDS points to {settings.creds}, which is not a readable file")
        return settings

    @property
    def servers(self) -> list[str]:
        return [u.strip() for u in self.nats_url.split(",") if u.strip()]

    @property
    def namespace(self) -> Namespace:
        return Namespace(self.prefix)

    def resolve_actor(self) -> str:
        """The actor recorded in the audit log: NATS user, else ``MESH_ACTOR``, else OS user."""
        if self.user:
            return self.user
        if self.actor:
            return self.actor
        try:
            return getpass.getuser()
        except (KeyError, OSError):
            return "unknown"

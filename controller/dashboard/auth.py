"""The operator token: mutating requests carry ``Authorization: Bearer <token>`` (constant-time check)."""

from __future__ import annotations

import hmac
import re

from starlette.exceptions import HTTPException
from starlette.requests import Request

from controller.dashboard.config import DashboardConfig

__all__ = ["HEADER", "check_token", "dashboard_actor", "token_matches"]

HEADER = "authorization"
_BEARER = "bearer "
_USER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}")


def token_matches(expected: str, given: str) -> bool:
    """Constant-time comparison (on bytes, so non-ASCII input cannot raise)."""
    return hmac.compare_digest(expected.encode(), given.encode())


def _given_token(request: Request) -> str | None:
    value = request.headers.get(HEADER, "")
    if value[: len(_BEARER)].lower() != _BEARER:
        return None
    return value[len(_BEARER) :].strip() or None


def check_token(request: Request, config: DashboardConfig) -> None:
    """Allow a mutating request, or raise: 403 when the dashboard is read-only or the token is
    wrong, 401 when no token was sent."""
    if config.token is None:
        raise HTTPException(
            403, "the dashboard is read-only: start it with MESH_DASHBOARD_TOKEN set to allow kill and resume"
        )
    given = _given_token(request)
    if given is None:
        raise HTTPException(401, "operator token required: send `Authorization: Bearer <token>`")
    if not token_matches(config.token, given):
        raise HTTPException(403, "wrong operator token")


def dashboard_actor(page_user: str | None, config: DashboardConfig) -> str:
    """``dashboard:<user>``: the name typed in the page, else ``MESH_DASHBOARD_USER``."""
    user = (page_user or "").strip() or config.user
    if not user:
        raise HTTPException(400, "who are you? type your name in the page (or set MESH_DASHBOARD_USER)")
    if not _USER.fullmatch(user):
        raise HTTPException(
            400, "invalid user name: up to 64 letters, digits and . _ @ + -, starting with a letter or digit"
        )
    return f"dashboard:{user}"

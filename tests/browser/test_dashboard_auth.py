"""The dashboard's safety rules without a browser: token checks, the actor, loopback, config errors."""

from __future__ import annotations

import pytest
from starlette.exceptions import HTTPException
from starlette.requests import Request

from controller.dashboard.auth import check_token, dashboard_actor, token_matches
from controller.dashboard.config import DashboardConfig, is_loopback
from mesh.errors import ConfigError
from mesh.runtime.settings import Settings

TOKEN = "0123456789abcdef"


def _request(headers: dict[str, str]) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": "POST", "path": "/api/kill", "headers": raw})


def _config(token: str | None = TOKEN, user: str | None = None) -> DashboardConfig:
    return DashboardConfig(settings=Settings(), token=token, user=user)


@pytest.mark.parametrize(
    ("token", "headers", "status"),
    [
        (None, {"Authorization": f"Bearer {TOKEN}"}, 403),  # read-only dashboard: nothing unlocks it
        (TOKEN, {}, 401),
        (TOKEN, {"Authorization": TOKEN}, 401),  # not a bearer header
        (TOKEN, {"Authorization": "Bearer wrong-token-here"}, 403),
        (TOKEN, {"Authorization": "Bearer ünïcode"}, 403),
    ],
)
def test_mutations_need_the_right_token(token: str | None, headers: dict[str, str], status: int) -> None:
    with pytest.raises(HTTPException) as info:
        check_token(_request(headers), _config(token))
    assert info.value.status_code == status


def test_the_right_token_passes() -> None:
    check_token(_request({"Authorization": f"bearer {TOKEN}"}), _config())
    assert token_matches(TOKEN, TOKEN) and not token_matches(TOKEN, TOKEN[:-1])


def test_actor_is_the_dashboard_user() -> None:
    assert dashboard_actor("alice", _config()) == "dashboard:alice"
    assert dashboard_actor("", _config(user="ops")) == "dashboard:ops"
    assert dashboard_actor("bob", _config(user="ops")) == "dashboard:bob"
    for bad in (None, "", "   "):
        with pytest.raises(HTTPException):
            dashboard_actor(bad, _config())
    with pytest.raises(HTTPException):
        dashboard_actor("alice; rm -rf", _config())


def test_config_rules() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.1")
    assert _config().loopback
    with pytest.raises(ConfigError):
        _config(token="short")
    env = {"MESH_DASHBOARD_TOKEN": TOKEN, "MESH_DASHBOARD_USER": "ops", "NATS_URL": "nats://127.0.0.1:1"}
    config = DashboardConfig.from_env(env)
    assert config.writable and config.user == "ops" and config.port == 8600 and config.loopback
    assert TOKEN not in repr(config)
    assert not DashboardConfig.from_env({}).writable

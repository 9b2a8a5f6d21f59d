"""Settings from the environment, and the error hierarchy's messages and bases."""

from __future__ import annotations

from pathlib import Path

import pytest

from mesh import errors
from mesh.errors import ConfigError, MeshError
from mesh.runtime.settings import DEFAULT_NATS_URL, Settings


def test_defaults() -> None:
    s = Settings.from_env({})
    assert s.nats_url == DEFAULT_NATS_URL == "nats://127.0.0.1:4222"
    assert s.prefix == "mesh"
    assert s.servers == ["nats://127.0.0.1:4222"]
    assert s.user is None and s.token is None and s.creds is None


def test_nats_cli_variable_names(tmp_path: Path) -> None:
    creds = tmp_path / "u.creds"
    creds.write_text("x")
    s = Settings.from_env(
        {
            "NATS_URL": "nats://a:1, nats://b:2",
            "NATS_USER": "alice",
            "NATS_PASSWORD": "pw",
            "NATS_TOKEN": "tok",
            "NATS_CREDS": str(creds),
            "MESH_PREFIX": "acme",
            "MESH_ACTOR": "bob",
        }
    )
    assert s.servers == ["nats://a:1", "nats://b:2"]
    assert (s.user, s.password, s.token, s.creds) == ("alice", "pw", "tok", creds)
    assert s.namespace.control_bucket == "acme_control"
    assert "pw" not in repr(s) and "tok" not in repr(s)


def test_actor_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings.from_env({"NATS_USER": "alice", "MESH_ACTOR": "bob"}).resolve_actor() == "alice"
    assert Settings.from_env({"MESH_ACTOR": "bob"}).resolve_actor() == "bob"
    monkeypatch.setattr("getpass.getuser", lambda: "os-user")
    assert Settings.from_env({}).resolve_actor() == "os-user"


def test_overrides_win() -> None:
    assert Settings.from_env({"NATS_URL": "nats://x:1"}, nats_url="nats://y:2").nats_url == "nats://y:2"


def test_bad_prefix_and_creds_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="MESH_PREFIX"):
        Settings.from_env({"MESH_PREFIX": "no.dots"})
    with pytest.raises(ConfigError, match="NATS_CREDS"):
        Settings.from_env({"NATS_CREDS": str(tmp_path / "missing.creds")})


def test_every_public_error_is_a_mesh_error_and_documented() -> None:
    doc = errors.__doc__ or ""
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, MeshError)
        assert name in doc, f"{name} missing from the mesh.errors docstring"


def test_errors_mix_in_standard_bases_and_carry_data() -> None:
    e = errors.PayloadTooLarge("Heartbeat", 10, 5)
    assert isinstance(e, ValueError) and (e.size, e.max_payload) == (10, 5)
    assert isinstance(errors.MeshTimeout("kill", 2.0), TimeoutError)
    assert isinstance(errors.ConnectionFailed("nats://x"), ConnectionError)
    assert "mesh up" in str(errors.ConnectionFailed("nats://x"))
    assert isinstance(errors.AuthenticationFailed("nats://x"), PermissionError)
    assert str(errors.PermissionDenied("write kill records")) == (
        "permission denied: this user may not write kill records"
    )
    assert errors.PortInUse(4222).port == 4222
    conflict = errors.ProvisioningConflict("bucket b", {"history": (1, 16)})
    assert "history: have 1, want 16" in str(conflict)


def test_agent_killed_message() -> None:
    from mesh.protocol.models import KillRecord

    e = errors.AgentKilled(KillRecord(target="agent://a/b/c", actor="alice", reason="oops"))
    assert str(e) == "agent killed by alice (agent://a/b/c): oops"
    assert str(errors.AgentKilled(None, reason="no contact")) == "agent killed: no contact"

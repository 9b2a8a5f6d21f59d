"""``mesh`` failures are one line naming cause and fix, with the documented exit codes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from mesh.runtime.settings import Settings
from mesh.transport.server import EmbeddedServer
from tests.cli.test_cli_commands import env_for
from tests.operator_support import MESH, URI

pytestmark = pytest.mark.timeout(120)


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MESH, *args], env=env, capture_output=True, text=True, timeout=60, check=False)


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_help_has_examples(settings: Settings) -> None:
    result = run(env_for(settings), "--help")
    assert result.returncode == 0 and "Example" in result.stdout
    for command in (
        "kill",
        "resume",
        "list",
        "events",
        "status",
        "init",
        "demo",
        "up",
        "dashboard",
        "controller",
    ):
        sub = run(env_for(settings), command, "--help")
        assert sub.returncode == 0 and "Example: " in sub.stdout and f"mesh {command}" in sub.stdout, command


@pytest.mark.parametrize(
    ("target", "part"),
    [
        ("acme/prod/mailer", "scheme"),
        ("agent://acme/prod", "path"),
        ("agent://acme//mailer", "env"),
        ("agent://acme/pr.od/mailer", "env"),
        ("agent://acme/prod/mail er", "name"),
        ("agent://acme/prod/mäiler", "name"),
        ("agent://acme/prod/>", "name"),
    ],
)
def test_bad_targets_exit_2(settings: Settings, target: str, part: str) -> None:
    result = run(env_for(settings), "kill", target)
    assert result.returncode == 2
    line = one_line_error(result)
    assert line.startswith("mesh: error: invalid target") and f": {part}: " in line


def test_usage_errors_exit_2(settings: Settings) -> None:
    assert run(env_for(settings), "kill").returncode == 2
    assert run(env_for(settings), "kill", URI, "--wait", "-1").returncode == 2
    result = run(env_for(settings), "events", "--since", "yesterday")
    assert result.returncode == 2 and "30s, 15m, 1h" in one_line_error(result)
    # (--instance itself, against a provisioned namespace: tests/cli/test_cli_flags.py)


def test_server_down_is_one_line_exit_1(settings: Settings, tmp_path: Path) -> None:
    env = env_for(settings, NATS_URL="nats://127.0.0.1:1")
    for args in (["kill", URI], ["list"], ["events"], ["status", URI]):
        result = run(env, *args)
        assert result.returncode == 1
        line = one_line_error(result)
        assert "cannot reach NATS at nats://127.0.0.1:1" in line and "mesh up" in line


def test_not_provisioned_names_the_fix(settings: Settings) -> None:
    result = run(env_for(settings, MESH_PREFIX="neverprovisioned"), "list")
    assert result.returncode == 1
    assert "mesh init" in one_line_error(result)


def test_wrong_credentials_exit_1(settings: Settings, tmp_path: Path) -> None:
    server = EmbeddedServer(tmp_path / "auth", port=0, extra_args=["--user", "ops", "--pass", "s3cret"])
    server.start()
    try:
        env = env_for(settings, NATS_URL=server.url, NATS_USER="ops", NATS_PASSWORD="wrong")
        result = run(env, "kill", URI)
        assert result.returncode == 1
        line = one_line_error(result)
        assert "refused the credentials" in line and "NATS_PASSWORD" in line
        good = env_for(settings, NATS_URL=server.url, NATS_USER="ops", NATS_PASSWORD="s3cret")
        assert run(good, "init").returncode == 0
        result = run(good, "kill", URI, "--json", "--wait", "0")
        assert result.returncode == 0, result.stderr
    finally:
        server.stop()


def test_permission_denied_names_what_was_refused(settings: Settings, tmp_path: Path) -> None:
    config = tmp_path / "auth.conf"
    config.write_text(
        "authorization {\n"
        "  users = [\n"
        "    {user: admin, password: adminpw}\n"
        '    {user: viewer, password: viewerpw, permissions: {publish: {deny: ["$KV.>"]}}}\n'
        "  ]\n"
        "}\n"
    )
    server = EmbeddedServer(tmp_path / "perm", port=0, config_file=config)
    server.start()
    try:
        admin = env_for(settings, NATS_URL=server.url, NATS_USER="admin", NATS_PASSWORD="adminpw")
        assert run(admin, "init").returncode == 0
        viewer = env_for(settings, NATS_URL=server.url, NATS_USER="viewer", NATS_PASSWORD="viewerpw")
        result = run(viewer, "kill", URI)
        assert result.returncode == 1
        assert (
            one_line_error(result) == "mesh: error: permission denied: this user may not write kill records"
        )
        assert run(viewer, "list").returncode == 0
    finally:
        server.stop()


def test_debug_shows_the_traceback(settings: Settings) -> None:
    result = run(env_for(settings, NATS_URL="nats://127.0.0.1:1"), "--debug", "list")
    assert result.returncode == 1 and "Traceback" in result.stderr

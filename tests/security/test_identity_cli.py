"""``mesh credentials ...`` and ``mesh callout``, the real entry point in subprocesses, against
nats-server running nats-identity.conf."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.natsjwt import IssuerKey
from mesh.errors import AuthenticationFailed
from tests.operator_support import MESH
from tests.ports import free_port
from tests.security.identity_support import IdentityServer, identity_server_fixture

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def ident(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdentityServer]:
    yield from identity_server_fixture(tmp_path_factory.mktemp("identity-cli-nats"))


def env_for(ident: IdentityServer, user: str = "admin", **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NATS_", "MESH_"))}
    env.update({"NATS_URL": ident.url, "NATS_USER": user, "NATS_PASSWORD": ident.passwords[user], **extra})
    return env


async def mesh(ident: IdentityServer, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        MESH, *args, env=env_for(ident), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_issue_list_revoke(ident: IdentityServer) -> None:
    code, out, err = await mesh(ident, "credentials", "agent", "agent://acme/prod/mailer", "--json")
    assert code == 0, err
    issued = json.loads(out)
    assert issued["identity"] == {
        "role": "agent",
        "scope": "agent://acme/prod/mailer",
        "name": "",
        "instance": None,
    }
    conn = await ident.connect_token(issued["token"])
    await conn.close()

    code, out, err = await mesh(
        ident, "credentials", "operator", "--scope", "agent://acme/*/*", "--name", "alice"
    )
    assert code == 0, err
    assert "operator alice over agent://acme/*/*" in out
    token = next(line.split("=", 1)[1] for line in out.splitlines() if line.startswith("NATS_TOKEN="))
    conn = await ident.connect_token(token)
    await conn.close()

    code, out, err = await mesh(ident, "credentials", "list", "--json")
    assert code == 0, err
    listed = json.loads(out)
    assert issued["id"] in [r["id"] for r in listed]
    assert issued["token"].split("_")[-1] not in out and "secret" not in out  # never the secret, nor its hash

    code, out, err = await mesh(ident, "credentials", "revoke", issued["id"])
    assert (code, out.strip()) == (0, f"revoked {issued['id']}"), err
    with pytest.raises(AuthenticationFailed):
        await ident.connect_token(issued["token"])
    code, out, err = await mesh(ident, "credentials", "revoke", issued["id"])
    assert code != 0
    assert err.strip().splitlines() == [
        f"mesh: error: no credential '{issued['id']}': see `mesh credentials list`"
    ]


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["agent", "agent://acme/*/mailer"], "only allowed in kill/resume"),
        (["operator", "--scope", "agent://*/prod/*", "--name", "bob"], "wildcards only at the end"),
        (["operator", "--scope", "agent://acme/*/*", "--role", "root"], "invalid --role 'root'"),
    ],
)
async def test_bad_requests_get_one_line(ident: IdentityServer, args: list[str], problem: str) -> None:
    code, out, err = await mesh(ident, "credentials", *args)
    assert code != 0
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and problem in err, err


async def test_seed_and_the_callout_command(ident: IdentityServer) -> None:
    code, out, err = await mesh(ident, "credentials", "seed")
    assert code == 0, err
    pair = dict(line.split("=", 1) for line in out.splitlines())
    assert IssuerKey(pair["MESH_CALLOUT_SEED"]).public == pair["MESH_CALLOUT_ISSUER"]

    _, token = await ident.issue_agent("agent://acme/prod/cli")
    ident.stop_callout()  # `mesh callout`, in its own process, answers instead
    seed = ident.issuer_seed
    proc = await asyncio.create_subprocess_exec(
        MESH, "callout", env=env_for(ident, "callout", MESH_CALLOUT_SEED=seed), stderr=asyncio.subprocess.PIPE
    )
    try:

        async def admitted() -> bool:
            try:
                conn = await ident.connect_token(token)
            except AuthenticationFailed:
                return False
            await conn.close()
            return True

        deadline = asyncio.get_running_loop().time() + 30
        while not await admitted():
            assert asyncio.get_running_loop().time() < deadline, "mesh callout never admitted the token"
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        ident.start_callout()


async def test_callout_without_a_seed_says_how_to_make_one(ident: IdentityServer) -> None:
    proc = await asyncio.create_subprocess_exec(
        MESH,
        "callout",
        env=env_for(ident, "callout"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2  # a configuration error is a usage error (cli/errors.py)
    assert "MESH_CALLOUT_SEED is not set: make a pair with `mesh credentials seed`" in err.decode()


async def test_mesh_up_says_loudly_that_it_is_unauthenticated(tmp_path: Path) -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        MESH,
        "up",
        "--port",
        str(port),
        "--data-dir",
        str(tmp_path / "up"),
        "--no-controller",
        "--no-dashboard",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        line = await asyncio.wait_for(proc.stderr.readline(), 60)
        while b"DEV ONLY" not in line:
            assert line, "mesh up ended without its warning"
            line = await asyncio.wait_for(proc.stderr.readline(), 60)
        assert b"NO AUTHENTICATION" in line and b"nats-identity.conf" in line
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)

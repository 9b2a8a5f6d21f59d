"""Shared fixtures: a real nats-server with JetStream on a free port, and a fresh namespace per test."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import NoReturn

import hypothesis
import nats
import pytest

from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection
from mesh.transport.provision import ProvisionOptions, provision
from mesh.transport.server import EmbeddedServer

# In CI (MESH_CI, set by .ci/run) property tests draw the same examples every run, so that a
# failure there reproduces; a developer's runs stay random and find new cases.
hypothesis.settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("MESH_CI"):
    hypothesis.settings.load_profile("ci")


def missing_tool(reason: str) -> NoReturn:
    """Fail for a missing system tool: `make test` installs them, so a test that needs one never skips."""
    pytest.fail(f"{reason} (`make test` installs it with .ci/system-tools; or run that script as root)")


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """One server for the session; tests stay apart through their own MESH_PREFIX."""
    server = EmbeddedServer(tmp_path_factory.mktemp("nats"), port=0)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    """A server for this test alone, which it may restart or kill (chaos tests)."""
    server = EmbeddedServer(tmp_path / "nats", port=0)
    server.start()
    yield server
    server.kill()


@pytest.fixture
def prefix() -> str:
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture
def settings(nats_server: EmbeddedServer, prefix: str) -> Iterator[Settings]:
    s = Settings(nats_url=nats_server.url, prefix=prefix, actor="tester", connect_timeout=3.0)
    yield s
    # In a thread of its own: a test may leave a loop running in this one (Playwright's does).
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, _drop_namespace(s)).result(timeout=30)


async def _drop_namespace(s: Settings) -> None:
    """Delete the test's buckets and audit stream: the session's server would otherwise gather
    about six file-backed streams per test, and JetStream slows down late in the run."""
    ns = s.namespace
    names = [
        ns.audit_stream,
        *(f"KV_{b}" for b in (ns.control_bucket, ns.instances_bucket, ns.checkpoints_bucket,
                              ns.leases_bucket, ns.policies_bucket, ns.quota_bucket,
                              ns.gateway_keys_bucket)),
    ]  # fmt: skip
    try:
        nc = await nats.connect(s.nats_url, connect_timeout=2, allow_reconnect=False)
    except Exception:  # the server is gone: nothing to clean
        return
    try:
        js = nc.jetstream()
        for name in names:
            with contextlib.suppress(Exception):
                await js.delete_stream(name)
    finally:
        await nc.close()


@pytest.fixture
async def conn(settings: Settings) -> AsyncIterator[Connection]:
    """A connection with the namespace provisioned."""
    c = await Connection.open(settings, name="test")
    await provision(c.js, c.ns, ProvisionOptions())
    yield c
    await c.close()

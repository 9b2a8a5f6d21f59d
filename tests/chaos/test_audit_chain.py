"""Audit chains through server restarts, a stream leader change in a 3-node cluster, and a message
block file edited on the disk of a stopped server."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from mesh.errors import MeshError
from mesh.protocol.auditverify import BreakKind
from mesh.runtime.settings import Settings
from mesh.transport.audit import publish_event
from mesh.transport.auditwalk import verify_stream
from mesh.transport.connection import Connection
from mesh.transport.provision import ProvisionOptions, provision
from mesh.transport.server import EmbeddedServer
from tests.audit_support import event, stored, write_concurrently

from .blockfile import records, replace_payload
from .cluster import ClusterNode
from .helpers import eventually

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(240)]


def _settings(server: EmbeddedServer) -> Settings:
    return Settings(
        nats_url=server.url, prefix="c" + uuid.uuid4().hex[:8], actor="chaos", connect_timeout=5.0
    )


async def _jetstream_ready(conn: Connection) -> bool:
    await conn.js.stream_info(conn.ns.audit_stream)
    return True


async def test_untouched_stream_verifies_across_restarts(own_server: EmbeddedServer) -> None:
    settings = _settings(own_server)
    keep = await Connection.open(settings, name="long-lived writer")
    try:
        await provision(keep.js, keep.ns, ProvisionOptions())
        total = 0
        for restart in ("none", "graceful", "kill -9"):
            if restart == "graceful":
                await asyncio.to_thread(own_server.restart)
            elif restart == "kill -9":
                await asyncio.to_thread(own_server.restart, hard=True)
            await eventually(lambda: _jetstream_ready(keep), what=f"JetStream back after {restart} restart")
            for n in range(5):
                await publish_event(keep.js, keep.ns, event(0, total + n))
            total += 5 + await write_concurrently(settings, writers=2, each=3)
        report = await verify_stream(keep)
    finally:
        await keep.close()
    assert report.ok, report.broken
    assert (report.events, report.chained, report.unchained) == (total, total, 0)
    # The long-lived writer reconnected twice and went on with the same chain (no fork, no gap).
    assert sorted(h.events for h in report.chains.values() if h.writer == "writer-0")[-1] == 15


def _role(url: str, env: dict[str, str], user: str) -> Settings:
    password = env[f"MESH_{user.upper()}_PASSWORD"]
    return Settings(nats_url=url, user=user, password=password, prefix="mesh", connect_timeout=5.0)


async def _leader(settings: Settings) -> str | None:
    async with Connection(settings) as conn:
        info = await conn.js.stream_info(conn.ns.audit_stream)
        return info.cluster.leader if info.cluster else None


async def test_stream_leader_change_under_concurrent_writers(
    cluster: tuple[list[ClusterNode], dict[str, str]],
) -> None:
    nodes, env = cluster
    urls = [n.server.url for n in nodes]
    all_urls = ",".join(urls)

    async def provisioned() -> bool:
        async with Connection(_role(all_urls, env, "admin")) as conn:
            await provision(conn.js, conn.ns, ProvisionOptions(replicas=3))
        return True

    await eventually(provisioned, timeout=90, what="R3 provisioning (JetStream meta leader elected)")
    old = await eventually(lambda: _leader(_role(all_urls, env, "admin")), timeout=60, what="a stream leader")
    doomed = next(n for n in nodes if n.server.server_name == old)
    # One writer per node (the controller role may write every audit event), all at once.
    writers = [
        await Connection.open(_role(url, env, "controller"), name=f"w{k}") for k, url in enumerate(urls)
    ]
    acked = [0] * len(writers)
    tried = [0] * len(writers)
    stop = asyncio.Event()

    async def write(k: int) -> None:
        while not stop.is_set():
            tried[k] += 1
            try:
                await publish_event(writers[k].js, writers[k].ns, event(k, tried[k]), timeout=2.0)
                acked[k] += 1
            except MeshError:
                await asyncio.sleep(0.05)  # the outcome is unknown: the writer's chain has ended

    tasks = [asyncio.create_task(write(k)) for k in range(len(writers))]
    try:
        await eventually(lambda: sum(acked) >= 30, what="writes before the leader is killed")
        doomed.server.kill()
        survivors = ",".join(n.server.url for n in nodes if n is not doomed)

        async def new_leader() -> bool:
            leader = await _leader(_role(survivors, env, "admin"))
            return leader is not None and leader != old

        await eventually(new_leader, timeout=90, what="a new stream leader")
        before = sum(acked)
        await eventually(lambda: sum(acked) >= before + 30, timeout=90, what="writes under the new leader")
        await asyncio.to_thread(doomed.server.start)
        before = sum(acked)
        await eventually(lambda: sum(acked) >= before + 30, timeout=90, what="writes after the node rejoined")
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        for w in writers:
            await w.close()

    async def verified_on(url: str) -> object:
        async with Connection(_role(url, env, "auditor")) as conn:  # read-only: verify needs no more
            return await verify_stream(conn)

    # The rejoined node first: a consumer there may serve a replica still catching up.
    for url in sorted(urls, key=lambda u: u != doomed.server.url):
        report = await eventually(lambda u=url: verified_on(u), timeout=90, what=f"verify through {url}")
        assert report.ok, report.broken  # type: ignore[attr-defined]
        assert report.unchained == 0  # type: ignore[attr-defined]
        assert sum(acked) <= report.events <= sum(tried)  # type: ignore[attr-defined]


def _audit_block(server: EmbeddedServer, settings: Settings) -> Path:
    (block,) = (server.data_dir / "jetstream").rglob(f"{settings.namespace.audit_stream}/msgs/1.blk")
    return block


@pytest.mark.parametrize("how", ["bytes edited", "bytes edited, index deleted", "checksum recomputed"])
async def test_edited_message_block_on_disk(own_server: EmbeddedServer, how: str) -> None:
    settings = _settings(own_server)
    stream = settings.namespace.audit_stream
    async with Connection(settings) as conn:
        await provision(conn.js, conn.ns, ProvisionOptions())
        for n in range(12):
            await publish_event(conn.js, conn.ns, event(0, n))
        before = await verify_stream(conn)
    assert before.ok and before.events == 12
    anchors = before.anchors()  # what an auditor saved off the box earlier
    await asyncio.to_thread(own_server.stop)

    block = _audit_block(own_server, settings)
    data = block.read_bytes()
    needle = b"writer 0 event 005"  # the payload of stream seq 6; same length, still valid JSON
    assert data.count(needle) == 1
    if how == "checksum recomputed":  # what someone who knows the file format does
        (rec,) = [r for r in records(data) if r.seq == 6]
        assert needle in rec.payload
        data = replace_payload(data, stream, 1, 6, rec.payload.replace(needle, b"writer 0 event 00X"))
    else:
        data = data.replace(needle, b"writer 0 event 00X")
    block.write_bytes(data)
    if how == "bytes edited, index deleted":  # the server then rebuilds the stream's state from the blocks
        for f in block.parent.glob("index.db"):
            f.unlink()
    await asyncio.to_thread(own_server.start)

    async with Connection(settings) as conn:
        report = await eventually(lambda: verify_stream(conn), what="a verify after the restart")
        anchored = await verify_stream(conn, anchors=anchors)
        served = [m for m in await stored(conn) if m.seq == 6]
    if how == "checksum recomputed":
        # nats-server serves the edited event as if nothing happened; the chain does not agree.
        assert served and b"writer 0 event 00X" in served[0].data
        assert report.broken is not None
        assert (report.broken.kind, report.broken.stream_seq, report.broken.chain_seq) == (
            BreakKind.EDITED,
            6,
            6,
        )
    elif how == "bytes edited":
        # nats-server checks each record's checksum and never serves the edited bytes: with its
        # index it skips the record, a hole in the stream at 6.
        assert not served and report.broken is not None
        assert (report.broken.kind, report.broken.stream_seq) == (BreakKind.REMOVED, 6)
    else:
        # Rebuilding its state from the blocks, it cuts the stream at the bad record: 6-12 are gone
        # and the stream looks whole. Invisible without an anchor, named with one.
        assert report.ok and report.events == 5
        assert anchored.broken is not None
        assert (anchored.broken.kind, anchored.broken.stream_seq) == (BreakKind.REMOVED, 6)
    assert not anchored.ok

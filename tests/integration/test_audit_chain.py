"""Audit chains against a real server: concurrent writers, dedup, legacy events, an admin who rewrites
the stream (edited, removed, reordered, inserted), and ``mesh audit verify`` as a user runs it."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from mesh.client.operator import AsyncMesh
from mesh.protocol.auditverify import BreakKind
from mesh.protocol.codec import encode
from mesh.protocol.models import AuditEvent, EventType, utcnow
from mesh.runtime.settings import Settings
from mesh.transport.audit import publish_event
from mesh.transport.auditwalk import verify_stream
from mesh.transport.connection import Connection
from tests.audit_support import (
    edited,
    event,
    link,
    middle_of_a_chain,
    recreate_stream,
    stored,
    write_concurrently,
)
from tests.operator_support import MESH, URI, Worker

pytestmark = pytest.mark.timeout(120)


async def test_concurrent_writers_operator_and_agent_verify(conn: Connection, settings: Settings) -> None:
    worker = await Worker(settings, URI, "i1").start()
    try:
        async with AsyncMesh(settings) as op:
            await op.kill(URI, reason="chain test", wait=5.0)
            await op.resume(URI, wait=5.0)
        written = await write_concurrently(settings, writers=4, each=6)
    finally:
        await worker.stop()
        await worker.agent.stop()
    report = await verify_stream(conn)
    assert report.ok, report.broken
    assert report.unchained == 0 and report.events == report.chained
    assert report.events >= written + 2 + 3  # + kill, resume; + started, halted, resumed
    writers = {h.writer for h in report.chains.values()}
    assert {f"writer-{w}" for w in range(4)} <= writers
    assert f"{URI}#i1" in writers and "tester" in writers
    assert sorted(h.events for h in report.chains.values() if h.writer.startswith("writer-")) == [6] * 4


async def test_concurrent_publishes_on_one_connection_form_one_unbroken_chain(conn: Connection) -> None:
    # Without the chain's lock, these would all take #1 (or land out of chain order).
    await asyncio.gather(*(publish_event(conn.js, conn.ns, event(0, n)) for n in range(25)))
    report = await verify_stream(conn)
    assert report.ok, report.broken
    (head,) = report.chains.values()
    assert (head.first, head.seq, head.events) == (1, 25, 25)


async def test_an_event_deduped_for_one_writer_does_not_break_its_chain(
    conn: Connection, settings: Settings
) -> None:
    # Two controllers publish the same transition (same event id, as controller/writer.py does):
    # the stream keeps the first; the second writer's chain must not count the dropped one.
    other = await Connection.open(settings, name="second-controller")
    try:
        shared = event(1, 0)
        await publish_event(conn.js, conn.ns, event(0, 0))
        await publish_event(conn.js, conn.ns, shared)
        ack = await publish_event(other.js, other.ns, shared.model_copy(update={"reason": "seen by B"}))
        assert ack.duplicate
        await publish_event(other.js, other.ns, event(1, 1))
        await publish_event(other.js, other.ns, event(1, 2))
    finally:
        await other.close()
    report = await verify_stream(conn)
    assert report.ok, report.broken
    assert report.events == 4 and sorted(h.events for h in report.chains.values()) == [2, 2]


async def test_events_written_before_chaining_are_unchained_not_broken(conn: Connection) -> None:
    legacy = AuditEvent(type=EventType.KILL, target=URI, actor="old-cli")
    payload = encode(legacy).replace(b',"chain":null', b"")  # what a writer before chaining sent
    await conn.js.publish(f"{conn.ns.prefix}.audit.acme.prod.mailer._.kill", payload)
    await publish_event(conn.js, conn.ns, event(0, 0))
    await publish_event(conn.js, conn.ns, event(0, 1))
    report = await verify_stream(conn)
    assert report.ok and (report.unchained, report.chained, report.unchained_after_chained) == (1, 2, 0)
    # And the readers that predate chaining still read both kinds.
    async with AsyncMesh(Settings(nats_url=conn.settings.nats_url, prefix=conn.ns.prefix)) as op:
        assert len([e async for e in op.events()]) == 3


@pytest.mark.parametrize("tamper", ["edited", "removed", "reordered", "inserted"])
async def test_an_admin_who_recreates_the_stream_is_caught(
    conn: Connection, settings: Settings, tamper: str
) -> None:
    await write_concurrently(settings, writers=3, each=5)
    msgs = await stored(conn)
    assert (await verify_stream(conn)).ok
    i, j = middle_of_a_chain(msgs)
    chain = link(msgs[i])[0]
    history = list(msgs)
    if tamper == "edited":
        history[i] = edited(msgs[i])
        expect = (BreakKind.EDITED, i + 1)
    elif tamper == "removed":
        del history[i]
        expect = (BreakKind.REMOVED, j)  # the successor, one place earlier now
    elif tamper == "reordered":
        history[i], history[j] = history[j], history[i]
        expect = (BreakKind.REORDERED, i + 1)
    else:
        # A replayed copy (without its Nats-Msg-Id, which the new stream would drop as a duplicate).
        copy = type(msgs[i])(msgs[i].seq, msgs[i].subject, msgs[i].data, None)
        history.insert(j + 1, copy)
        expect = (BreakKind.INSERTED, j + 2)
    await recreate_stream(conn, history)
    report = await verify_stream(conn)
    assert report.broken is not None, tamper
    assert (report.broken.kind, report.broken.stream_seq) == expect
    assert report.broken.chain == chain


def _env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NATS_", "MESH_"))}
    return {**env, "NATS_URL": settings.nats_url, "MESH_PREFIX": settings.prefix}


async def _cli(settings: Settings, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        MESH, "audit", "verify", *args, env=_env(settings),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_cli_verify_intact_json_anchor_and_broken(
    conn: Connection, settings: Settings, tmp_path: Path
) -> None:
    await write_concurrently(settings, writers=2, each=4)
    code, out, err = await _cli(settings)
    assert code == 0, err
    assert out.splitlines()[0].startswith("audit log: 8 events (stream seq 1-8), 8 chained in 2 chains")
    assert out.splitlines()[-1] == "intact"
    code, out, err = await _cli(settings, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["ok"] is True and doc["events"] == 8 and len(doc["anchors"]) == 2
    heads = tmp_path / "heads.json"
    heads.write_text(out)

    # The admin drops the last event: no successor notices, the anchor does.
    msgs = await stored(conn)
    await recreate_stream(conn, msgs[:-1])
    code, out, err = await _cli(settings)
    assert code == 0, err
    code, out, err = await _cli(settings, "--anchor", str(heads))
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("mesh: error: audit log broken at stream seq 8 ")
    assert "removed" in err

    # An edit in the middle: caught without any anchor, and named.
    msgs = await stored(conn)
    i, _ = middle_of_a_chain(msgs)
    msgs[i] = edited(msgs[i])
    await recreate_stream(conn, msgs)
    code, out, err = await _cli(settings)
    assert code == 1
    assert err.startswith(f"mesh: error: audit log broken at stream seq {i + 1} ") and "edited" in err
    assert out.splitlines()[-1].startswith(f"audit log broken at stream seq {i + 1}")
    code, out, _ = await _cli(settings, "--json")
    assert code == 1 and json.loads(out)["broken"]["stream_seq"] == i + 1

    code, _, err = await _cli(settings, "--anchor", str(tmp_path / "missing.json"))
    assert code == 2 and "invalid --anchor" in err


async def test_since_walks_part_of_a_chain_without_calling_it_broken(conn: Connection) -> None:
    for n in range(3):
        await publish_event(conn.js, conn.ns, event(0, n))
    start = utcnow()  # every event above was acked, so stored with an earlier server time
    for n in range(3, 6):
        await publish_event(conn.js, conn.ns, event(0, n))
    report = await verify_stream(conn, since=start)
    assert report.ok, report.broken
    (head,) = report.chains.values()
    assert (report.events, report.first_seq, head.first, head.seq, head.partial) == (3, 4, 4, 6, True)
    # The whole stream, for comparison: the same chain from #1.
    whole = await verify_stream(conn)
    assert whole.ok and next(iter(whole.chains.values())).partial is False

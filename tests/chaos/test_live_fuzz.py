"""Garbage and replays at a running controller and running SDK instances, on the subjects they listen
to (``mesh.hb.>`` and ``mesh.ctl.>``): nothing crashes, nothing wrong is applied, bad input is counted.

(With nats.conf nobody but the server may publish on ``mesh.ctl.>``, see tests/security; this runs
on an open dev server, where anyone can, to show the instances defend themselves anyway.)
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from datetime import UTC, datetime
from typing import Any

import pytest
from nats.aio.msg import Msg

from controller import ControllerOptions, serve
from mesh.client.operator import AsyncMesh
from mesh.protocol.codec import encode
from mesh.protocol.models import Heartbeat, KillRecord, Status
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection

from .helpers import eventually, start_fleet, stop_fleet

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(180)]

A = "agent://acme/prod/alpha"
B = "agent://acme/prod/beta"
FAST = ControllerOptions(lost_after=30.0, sweep_every=0.2, refresh_every=0.5, flush_every=0.05)


def find(obj: Any, key: str) -> Any:
    if isinstance(obj, dict):
        if key in obj:
            return obj[key]
        for v in obj.values():
            found = find(v, key)
            if found is not None:
                return found
    if isinstance(obj, list):
        for v in obj:
            found = find(v, key)
            if found is not None:
                return found
    return None


async def test_garbage_and_replays_change_nothing(settings: Settings, conn: Connection) -> None:
    ns = conn.ns
    nc = conn.nc
    stop = asyncio.Event()
    ctl = asyncio.create_task(serve(settings, stop=stop, options=FAST))
    workers = await start_fleet(settings, [(A, "a1"), (B, "b1")])
    alpha, beta = workers
    # capture the server's real republished control messages, to replay them later
    captured: list[Msg] = []

    async def capture(msg: Msg) -> None:
        captured.append(msg)

    await nc.subscribe(f"{ns.prefix}.ctl.>", cb=capture)
    try:
        async with AsyncMesh(settings) as op:

            async def statuses() -> dict[str, Status]:
                return {r.instance: r.status for r in await op.list_instances("agent://acme/prod/*")}

            await eventually(
                lambda: _eq(statuses(), {"a1": Status.ACTIVE, "b1": Status.ACTIVE}), what="both listed"
            )
            # history to replay: alpha killed then resumed; beta killed (and stays so)
            await op.kill(A, reason="first", wait=5.0)
            await op.resume(A, reason="back", wait=5.0)
            await op.kill(B, reason="stays killed", wait=5.0)
            await eventually(
                lambda: not alpha.agent.killed and beta.agent.killed, what="alpha resumed, beta killed"
            )
            await eventually(lambda: len(captured) >= 3, what="republished messages captured")
            old_kill_a, old_del_a = captured[0], captured[1]
            assert old_kill_a.headers and old_del_a.headers
            assert old_del_a.headers.get("KV-Operation") == "DEL"

            rng = random.Random(1234)
            hb_a = ns.heartbeat_subject(alpha.agent._core.cfg.uri, "a1")
            ctl_a, ctl_b = ns.control_subject("acme.prod.alpha"), ns.control_subject("acme.prod.beta")
            good_hb = json.loads(encode(Heartbeat(agent_uri=A, instance="a1")))
            sent = 0

            async def pub(subject: str, data: bytes, headers: dict[str, str] | None = None) -> None:
                nonlocal sent
                await nc.publish(subject, data, headers=headers)
                sent += 1

            # --- heartbeats: malformed, wrong types, oversized, mismatched, forbidden statuses
            for _ in range(200):
                await pub(hb_a, rng.randbytes(rng.randint(0, 300)))
            for bad in (b"{", b"null", b"[]", b'"x"'):
                await pub(hb_a, bad)
            for change in (
                {"seq": "many"}, {"interval": -1}, {"status": "lost"}, {"agent_uri": B}, {"instance": "zz"},
                {"v": 99}, {"metadata": "x" * 300_000},
            ):  # fmt: skip
                await pub(hb_a, json.dumps({**good_hb, **change}).encode())
            await pub(f"{ns.prefix}.hb.acme.prod.ghost.g1", json.dumps({**good_hb, "agent_uri": B}).encode())
            await pub(f"{ns.prefix}.hb.acme.prod", json.dumps(good_hb).encode())
            await pub(f"{ns.prefix}.hb.acme.prod.alpha.a1.extra", json.dumps(good_hb).encode())

            # --- control: garbage, fake kill without the server's headers, replays of old revisions
            fake_kill = encode(KillRecord(target=A, actor="attacker", reason="forged"))
            for _ in range(100):
                await pub(ctl_a, rng.randbytes(rng.randint(0, 300)))
            await pub(ctl_a, fake_kill)  # no Nats-Sequence: not from the republish
            await pub(ctl_a, fake_kill, {"Nats-Sequence": "abc"})
            await pub(ctl_a, os.urandom(64), {"Nats-Sequence": "1"})
            await pub(ctl_a, old_kill_a.data, dict(old_kill_a.headers))  # replayed old kill of alpha
            await pub(ctl_b, old_del_a.data, {**old_del_a.headers, "Nats-Subject": "$KV.x.acme.prod.beta"})
            await pub(
                ctl_b, b"", {"Nats-Sequence": "1", "KV-Operation": "DEL"}
            )  # replayed old resume of beta
            await pub(ctl_b, b"", {"Nats-Sequence": "0", "KV-Operation": "PURGE"})
            await pub(
                ctl_a,
                json.dumps({"target": A, "unknown": 1, "grace": "soon"}).encode(),
                {"Nats-Sequence": "2"},
            )
            await nc.flush()

            # nothing applied: alpha still works, beta still killed, the fleet is exactly the two
            done = alpha.done
            await eventually(lambda: alpha.done > done + 5, what="alpha to keep working")
            assert not alpha.agent.killed and beta.agent.killed

            # Evidence that both sides had every bad message to act on: each counted it.
            async def bad_total() -> int:
                reply = await nc.request("$SRV.STATS.mesh-controller", b"", timeout=5)
                return int(find(json.loads(reply.data), "bad_total") or 0)

            await eventually(lambda: _at_least(bad_total(), 200), what="the controller to count the garbage")
            await eventually(lambda: alpha.agent._core.malformed >= 100, what="alpha to count the garbage")
            # ... and a status write after that: each record's last_seen moves past this moment.
            mark = datetime.now(UTC)
            await eventually(
                lambda: _seen_after(op.list_instances("agent://acme/prod/*"), {"a1", "b1"}, mark),
                what="status writes after the garbage was counted",
            )
            assert await statuses() == {"a1": Status.ACTIVE, "b1": Status.PAUSED}
            assert [h.key for h in await op.records("agent://acme/prod/*")] == ["acme.prod.beta"]
            assert not ctl.done()  # nothing crashed
    finally:
        await stop_fleet(workers)
        stop.set()
        await asyncio.wait_for(ctl, 20)


async def _eq(aw: Any, expected: Any) -> bool:
    return (await aw) == expected


async def _at_least(aw: Any, n: int) -> bool:
    return int(await aw) >= n


async def _seen_after(aw: Any, instances: set[str], mark: datetime) -> bool:
    rows = {r.instance: r for r in await aw}
    return set(rows) == instances and all(r.last_seen > mark for r in rows.values())

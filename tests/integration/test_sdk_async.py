"""AsyncAgent: cancellation of guarded coroutines, pause, many instances, convergence under races."""

from __future__ import annotations

import asyncio
import random
import time

import pytest
from nats.aio.msg import Msg

from agent_sdk import AgentKilled, AsyncAgent
from mesh.protocol.models import Status
from mesh.protocol.subjects import Namespace
from mesh.runtime.settings import Settings
from mesh.transport.connection import Connection
from tests.heartbeats import watching
from tests.integration.sdk_helpers import audit_events, await_until, delete_kill, put_kill

URI = "agent://acme/prod/mailer"


async def _acks(conn: Connection, command_id: str) -> list[object]:
    return [e for e in await audit_events(conn, "halted") if e.command_id == command_id]


async def test_running_guarded_coroutine_is_cancelled(conn: Connection, settings: Settings) -> None:
    async with AsyncAgent(URI, instance="a1", settings=settings, hard_kill=False) as agent:
        entered = asyncio.Event()
        unwound: list[str] = []

        @agent.guard
        async def llm_call() -> str:
            entered.set()
            try:
                await asyncio.sleep(60)  # sleep-ok: a long call that the kill must cancel (it never runs out)
            finally:
                unwound.append("cancelled")
            return "never"

        call = asyncio.create_task(llm_call())
        await entered.wait()
        _, _, record = await put_kill(conn, URI)
        with pytest.raises(AgentKilled):
            await asyncio.wait_for(call, 30)
        assert unwound == ["cancelled"]
        await await_until(lambda: agent.status.value == "killed")
        # The ack is published right after the cancellation, not before it: wait for it to land.
        deadline = time.monotonic() + 30
        while not (acks := await _acks(conn, record.command_id)):
            assert time.monotonic() < deadline, "no halted acknowledgement"
            await asyncio.sleep(0.02)
        with pytest.raises(AgentKilled):
            await llm_call()
        assert len(await _acks(conn, record.command_id)) == len(acks) == 1


async def test_pause_mode_cancels_then_rerun_after_resume(conn: Connection, settings: Settings) -> None:
    async with AsyncAgent(
        URI, instance="a2", settings=settings, hard_kill=False, on_kill="pause", heartbeat_interval=0.2
    ) as agent:
        runs: list[str] = []
        gate = asyncio.Event()

        @agent.guard
        async def tool() -> str:
            runs.append("start")
            await gate.wait()
            runs.append("end")
            return "ok"

        call = asyncio.create_task(tool())
        await await_until(lambda: runs)
        key, _, _ = await put_kill(conn, URI)
        with pytest.raises(AgentKilled):
            await asyncio.wait_for(call, 30)
        assert agent.killed and agent.status.value == "paused"

        # A safe point blocks while paused ...
        blocked = asyncio.create_task(agent.heartbeat())
        # ... while the agent's own loop goes on: two more of its heartbeats, reporting paused.
        async with watching(conn.nc, conn.ns) as hbs:
            await hbs.more(["a2"], n=2)
        last = hbs.last("a2")
        assert last is not None and last.status is Status.PAUSED
        assert not blocked.done()
        await delete_kill(conn, key)
        assert await agent.wait_resumed(timeout=30)
        await asyncio.wait_for(blocked, 30)  # ... and returns on resume
        gate.set()
        assert await tool() == "ok"  # the documented re-run
        assert runs == ["start", "start", "end"]


async def test_many_instances_in_one_process(conn: Connection, settings: Settings) -> None:
    count = 200
    agents = [
        AsyncAgent(
            f"agent://acme/env{i % 4}/worker",
            instance=f"w{i}",
            settings=settings,
            hard_kill=False,
            heartbeat_interval=5.0,
            on_kill="pause",
        )
        for i in range(count)
    ]
    for start in range(0, count, 50):
        await asyncio.gather(*(a.start() for a in agents[start : start + 50]))
    progress = [0] * count

    async def work(i: int, agent: AsyncAgent) -> None:
        while True:
            await agent.heartbeat(metadata={"n": progress[i]})
            progress[i] += 1
            await agent.sleep(0.05)

    # A witness on the same loop, not targeted, running the same work loop.
    witness = AsyncAgent("agent://acme/env0/witness", instance="wit", settings=settings, hard_kill=False)
    await witness.start()
    progress.append(0)
    tasks = [asyncio.create_task(work(i, a)) for i, a in enumerate([*agents, witness])]
    try:
        key, _, record = await put_kill(conn, "agent://acme/*/worker")
        acks = await await_until_async(lambda: _acks(conn, record.command_id), count)
        assert {e.instance for e in acks} == {f"w{i}" for i in range(count)}  # type: ignore[attr-defined]
        frozen = progress[:count]
        mark = progress[count]
        await await_until(lambda: progress[count] >= mark + 5, what="the witness to work on")
        assert progress[:count] == frozen
        await delete_kill(conn, key)
        await await_until(
            lambda: all(p > f for p, f in zip(progress[:count], frozen, strict=True)), what="all resumed"
        )
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await witness.stop()
        for start in range(0, count, 50):
            await asyncio.gather(*(a.stop() for a in agents[start : start + 50]))


async def await_until_async(fetch: object, count: int, timeout: float = 60.0) -> list[object]:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        got = await fetch()  # type: ignore[operator]
        if len(got) >= count or loop.time() > end:
            return list(got)
        # sleep-ok: the poll interval: the loop re-checks until the condition holds or the deadline passes
        await asyncio.sleep(0.1)


async def test_concurrent_kills_and_resumes_converge(conn: Connection, settings: Settings) -> None:
    uris = ["agent://acme/prod/mailer", "agent://acme/dev/mailer", "agent://other/prod/crawler"]
    agents = [AsyncAgent(u, instance="c1", settings=settings, hard_kill=False) for u in uris]
    await asyncio.gather(*(a.start() for a in agents))
    targets = [
        ("agent://acme/prod/mailer", None),
        ("agent://acme/*/mailer", None),
        ("agent://*/*/*", None),
        ("agent://acme/dev/mailer", "c1"),
        ("agent://other/prod/*", None),
    ]
    ns = Namespace(settings.prefix)
    rng = random.Random(7)

    async def writer(seed: int) -> None:
        r = random.Random(seed)
        for _ in range(25):
            target, inst = r.choice(targets)
            if r.random() < 0.5:
                await put_kill(conn, target, inst)
            else:
                from mesh.protocol.target import parse_target

                await delete_kill(conn, ns.control_key(parse_target(target, inst)))

    try:
        await asyncio.gather(*(writer(rng.randrange(1 << 30)) for _ in range(4)))
        kv = await conn.js.key_value(ns.control_bucket)

        async def expected(agent: AsyncAgent) -> set[str]:
            keys = ns.matching_control_keys(agent.config.uri, agent.instance)
            live = set()
            for k in keys:
                try:
                    entry = await kv.get(k)
                except Exception:
                    continue
                if entry.value:
                    live.add(k)
            return live

        for agent in agents:
            want = await expected(agent)
            await await_until(
                lambda a=agent, w=want: {r.key for r in a._core.in_force()} == w and a.killed == bool(w),
                what=f"{agent.uri} converges",
            )
    finally:
        await asyncio.gather(*(a.stop() for a in agents))


async def test_provisions_itself_and_heartbeats_tell_the_status(settings: Settings) -> None:
    # No `conn` fixture: the namespace does not exist yet, so the agent provisions it.
    from mesh.protocol.codec import decode
    from mesh.protocol.models import Heartbeat

    async with AsyncAgent(
        URI, instance="h1", settings=settings, hard_kill=False, on_kill="pause", heartbeat_interval=0.2
    ) as agent:
        conn = await Connection.open(settings, name="hb-test")
        beats: list[Heartbeat] = []

        async def on_beat(msg: Msg) -> None:
            beats.append(decode(Heartbeat, msg.data))

        sub = await conn.nc.subscribe(conn.ns.heartbeat_wildcard, cb=on_beat)
        try:
            await agent.heartbeat(metadata={"step": 1})
            await await_until(lambda: any(b.metadata == {"step": 1} for b in beats))
            first = beats[-1]
            assert (first.agent_uri, first.instance, first.status.value) == (URI, "h1", "active")
            assert first.hard_kill is False and first.on_kill == "pause" and first.pid > 0

            key, _, _ = await put_kill(conn, "agent://acme/prod/*")
            parked = asyncio.create_task(agent.sleep(60))
            await await_until(lambda: any(b.status.value == "paused" for b in beats))
            assert [b for b in beats if b.status.value == "paused"][-1].kill_keys == [key]
            await delete_kill(conn, key)
            await asyncio.wait_for(parked, 30)
            await await_until(lambda: beats[-1].status.value == "active" and not beats[-1].kill_keys)
            assert [b.seq for b in beats] == sorted(b.seq for b in beats)
        finally:
            await sub.unsubscribe()
            await conn.close()

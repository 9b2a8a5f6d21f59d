"""A fleet process for :mod:`bench.kill_latency`: many real ``AsyncAgent`` instances in one process.

``python -m bench._fleet URL PREFIX RUN PROC --uri agent://bench/kl/n100 --first 0 --count 50``

Each instance is a real SDK instance with its own kill state, parked in
``await agent.sleep()`` (or in a guarded coroutine with ``--guarded``), with ``on_kill`` = ``--mode``.
The wall-clock time at which the SDK applies a pushed kill (its kill flag goes up: the instance
*observed* the kill) and at which it applies the resume (flag down) is noted by wrapping the
instance's ``refresh`` -- a bench-only probe, the SDK itself is not changed. In
``raise`` mode the parked call raises ``AgentKilled``; the task waits for the resume and parks
again. In ``pause`` mode the parked call blocks until the resume and returns.
``--agents-per-connection K``: instances share one NATS connection per K of them (the SDK's
``AsyncAgent(connection=...)``, whose agents share its control subscriptions, re-reads and
publish pipeline); 0 = every instance of the process on one connection; 1 = each
instance on its own connection (how a process hosting one agent runs).
The bench's operator side asks for the notes
between cycles on ``bench.fleet.RUN.PROC.collect`` and stops the process with
``bench.fleet.RUN.stop``. Bounded: it exits on its own after ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time

import nats
from nats.aio.msg import Msg

from bench.common import bench_settings


async def run(args: argparse.Namespace) -> None:
    from agent_sdk import AgentKilled, AsyncAgent

    settings = bench_settings(args.url, args.prefix)
    coord = await nats.connect(args.url, name=f"bench-fleet-{args.proc}")
    observed: list[float] = []
    resumed: list[float] = []
    raised = 0
    ready = 0
    failed: list[str] = []
    stop = asyncio.Event()
    gate = asyncio.Semaphore(args.start_concurrency)
    from mesh.transport.connection import Connection

    per_conn = args.agents_per_connection or max(1, args.count)
    shared: dict[int, Connection] = {}
    shared_lock = asyncio.Lock()

    async def connection_for(i: int) -> Connection | None:
        if per_conn == 1:
            return None  # the agent opens (and closes) its own
        group = i // per_conn
        async with shared_lock:
            if group not in shared:
                shared[group] = await Connection.open(settings, name=f"bench-fleet-{args.proc}-{group}")
            return shared[group]

    def probe(agent: AsyncAgent) -> None:
        core = agent._core
        flag = core.killed_evt
        original = core.refresh

        def refresh() -> None:
            before = flag.is_set()
            original()
            after = flag.is_set()
            if after and not before:
                observed.append(time.time())
            elif before and not after:
                resumed.append(time.time())

        core.refresh = refresh  # type: ignore[method-assign]

    async def instance(i: int) -> None:
        nonlocal ready, raised
        name = f"p{args.proc}-{i:05d}"
        await gate.acquire()
        released = False
        try:
            conn = await connection_for(i - args.first)
            async with AsyncAgent(
                args.uri,
                instance=name,
                settings=settings,
                connection=conn,
                heartbeat_interval=args.heartbeat_interval,
                on_kill=args.mode,
            ) as agent:
                probe(agent)
                gate.release()
                released = True
                ready += 1
                if args.guarded:

                    @agent.guard
                    async def work() -> None:
                        await asyncio.sleep(3600)

                while not stop.is_set():
                    try:
                        if args.guarded:
                            await work()
                        else:
                            await agent.sleep(3600)
                    except AgentKilled:
                        raised += 1
                        await agent.wait_resumed()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failed.append(f"{name}: {type(exc).__name__}: {exc}")
        finally:
            if not released:
                gate.release()

    async def on_collect(msg: Msg) -> None:
        nonlocal observed, resumed
        obs, res = observed, resumed
        observed, resumed = [], []
        await msg.respond(json.dumps({"observed": obs, "resumed": res}).encode())

    async def on_status(msg: Msg) -> None:
        body = {
            "ready": ready,
            "count": args.count,
            "failed": len(failed),
            "errors": failed[:3],
            "raised": raised,
        }
        await msg.respond(json.dumps(body).encode())

    async def on_stop(_msg: Msg) -> None:
        stop.set()

    base = f"bench.fleet.{args.run}"
    await coord.subscribe(f"{base}.{args.proc}.collect", cb=on_collect)
    await coord.subscribe(f"{base}.{args.proc}.status", cb=on_status)
    await coord.subscribe(f"{base}.stop", cb=on_stop)
    await coord.flush()

    tasks = [asyncio.create_task(instance(args.first + i)) for i in range(args.count)]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), args.max_seconds)
    for t in tasks:
        t.cancel()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
    for conn in shared.values():
        with contextlib.suppress(Exception):
            await conn.close()
    await coord.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("prefix")
    parser.add_argument("run")
    parser.add_argument("proc", type=int)
    parser.add_argument("--uri", required=True)
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--heartbeat-interval", type=float, default=2.0)
    parser.add_argument("--start-concurrency", type=int, default=64)
    parser.add_argument(
        "--agents-per-connection",
        type=int,
        default=0,
        help="instances per shared NATS connection (0: all of this process; 1: one each)",
    )
    parser.add_argument("--mode", choices=["pause", "raise"], default="pause", help="the instances' on_kill")
    parser.add_argument(
        "--guarded", action="store_true", help="park in a guarded coroutine, not agent.sleep()"
    )
    parser.add_argument("--max-seconds", type=float, default=900.0)
    args = parser.parse_args()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()

"""One agent process of the campaign: hosts a few instances that log each guarded action, then checkpoint.

Every action is appended to this process's log (one JSON line, flushed before the action counts),
so a ``kill -9`` loses no logged action. Instances pause on a kill and go on after the resume.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import IO, Any

from agent_sdk import AsyncAgent
from mesh.runtime.settings import Settings

#: How long one instance sleeps between actions (a safe point each time).
STEP = 0.1


class Log:
    def __init__(self, path: str) -> None:
        self.out: IO[str] = open(path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
        self.pid = os.getpid()

    def write(self, **fields: Any) -> None:
        self.out.write(json.dumps({"t": time.time(), "pid": self.pid, **fields}) + "\n")
        self.out.flush()


async def start_agent(settings: Settings, uri: str, instance: str, log: Log) -> AsyncAgent:
    """Start, retrying while the servers are away (a start needs them; the campaign restarts them)."""
    delay = 0.2
    while True:
        agent = AsyncAgent(
            uri,
            instance=instance,
            settings=settings,
            on_kill="pause",
            hard_kill=False,
            heartbeat_interval=0.5,
        )
        try:
            return await agent.start()
        except Exception as exc:
            log.write(ev="start_failed", uri=uri, inst=instance, error=repr(exc)[:300])
            # sleep-ok: backoff between start attempts while the servers are away (the campaign restarts them)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


async def run_instance(settings: Settings, uri: str, instance: str, log: Log) -> None:
    agent = await start_agent(settings, uri, instance, log)
    restored = agent.restore()
    n = int(restored["n"]) if isinstance(restored, dict) and "n" in restored else 0
    log.write(ev="start", uri=uri, inst=instance, restored=n, killed=agent.killed)

    @agent.guard
    async def act(k: int) -> None:
        log.write(ev="act", uri=uri, inst=instance, n=k)

    while True:
        await agent.heartbeat({"n": n})
        await act(n)
        agent.record(actions=1)
        n += 1
        await agent.checkpoint({"n": n})
        await agent.sleep(STEP)


async def main_async(args: argparse.Namespace) -> None:
    settings = Settings(
        nats_url=args.url,
        prefix=args.prefix,
        user=os.environ.get("CAMPAIGN_USER") or None,
        password=os.environ.get("CAMPAIGN_PASSWORD") or None,
        actor="campaign-agent",
        connect_timeout=3.0,
    )
    log = Log(args.log)
    members = [m.split("#", 1) for m in args.instances.split(",")]
    log.write(ev="process", instances=[f"{u}#{i}" for u, i in members])
    await asyncio.gather(*(run_instance(settings, uri, inst, log) for uri, inst in members))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--instances", required=True, help="uri#instance,uri#instance")
    asyncio.run(main_async(parser.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

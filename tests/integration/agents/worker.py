"""A subprocess agent for the SDK tests: logs each guarded action as one JSON line on stderr."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import structlog

from agent_sdk import Agent, AgentKilled, AsyncAgent
from mesh.runtime.logs import configure_logging
from mesh.runtime.settings import Settings


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--uri", required=True)
    parser.add_argument("--instance", required=True)
    parser.add_argument("--mode", choices=["loop", "async", "stuck", "stuck-async"], default="loop")
    parser.add_argument("--on-kill", default="raise")
    parser.add_argument("--no-hard-kill", action="store_true", help="hard_kill=False: never terminated")
    args = parser.parse_args()
    configure_logging("INFO", json=True)
    log = structlog.get_logger("worker")
    settings = Settings(nats_url=args.url, prefix=args.prefix, actor="worker")
    if args.mode == "stuck-async":
        return asyncio.run(stuck_async(args.uri, args.instance, settings))
    if args.mode == "async":
        return asyncio.run(loop_async(args.uri, args.instance, settings))
    try:
        with Agent(args.uri, instance=args.instance, settings=settings, on_kill=args.on_kill,
                   heartbeat_interval=0.5, hard_kill=not args.no_hard_kill) as agent:  # fmt: skip

            @agent.guard
            def act(n: int) -> None:
                log.info("action", n=n)

            log.info("ready")
            if args.mode == "stuck":
                act(0)
                time.sleep(120)  # sleep-ok: never reaches a safe point: escalation must end us
                return 3
            n = 0
            while True:
                agent.heartbeat(metadata={"n": n})
                act(n)
                n += 1
                agent.checkpoint({"n": n})
                agent.sleep(0.003)
    except AgentKilled:
        log.info("exiting killed")
        return 0


async def loop_async(uri: str, instance: str, settings: Settings) -> int:
    """The async twin of the loop mode: act, checkpoint, sleep at a safe point, forever."""
    log = structlog.get_logger("worker")
    async with AsyncAgent(uri, instance=instance, settings=settings, heartbeat_interval=0.5) as agent:

        @agent.guard
        async def act(n: int) -> None:
            log.info("action", n=n)

        log.info("ready")
        n = 0
        while True:
            await act(n)
            n += 1
            await agent.checkpoint({"n": n})
            await agent.sleep(0.003)


async def stuck_async(uri: str, instance: str, settings: Settings) -> int:
    """An AsyncAgent whose coroutine blocks its own event loop: escalation cannot use the loop."""
    log = structlog.get_logger("worker")
    async with AsyncAgent(uri, instance=instance, settings=settings, heartbeat_interval=0.5) as agent:

        @agent.guard
        async def act(n: int) -> None:
            log.info("action", n=n)

        await act(0)
        time.sleep(120)  # sleep-ok: blocks its own event loop, never at a safe point: escalation must end us
    return 3


if __name__ == "__main__":
    sys.exit(main())

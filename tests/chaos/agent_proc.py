"""A subprocess agent for the chaos tests: prints one JSON line per guarded action, flushed at once."""

from __future__ import annotations

import argparse
import json
import sys
import time

from agent_sdk import Agent, AgentKilled
from mesh.runtime.settings import Settings


def say(**fields: object) -> None:
    print(json.dumps({"t": time.time(), **fields}), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--uri", required=True)
    parser.add_argument("--instance", required=True)
    parser.add_argument("--interval", type=float, default=0.3)
    args = parser.parse_args()
    settings = Settings(nats_url=args.url, prefix=args.prefix, actor="chaos-agent")
    try:
        with Agent(
            args.uri,
            instance=args.instance,
            settings=settings,
            heartbeat_interval=args.interval,
            hard_kill=False,
        ) as agent:

            @agent.guard
            def act(n: int) -> None:
                say(action=n)

            say(ready=True)
            n = 0
            while True:
                agent.heartbeat(metadata={"n": n})
                act(n)
                n += 1
                agent.checkpoint({"n": n})
                agent.sleep(0.05)
    except AgentKilled:
        say(killed=True)
        return 0


if __name__ == "__main__":
    sys.exit(main())

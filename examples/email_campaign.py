"""An email-campaign agent that sends batches of (fake) emails, checkpointing after each batch.

The README's problem, with the kill switch built in::

    NATS_URL=nats://127.0.0.1:4222 python examples/email_campaign.py --instance us-central1-a

    mesh kill agent://myorg/production/email-campaign --reason "broken link in the template"
    mesh resume agent://myorg/production/email-campaign

On a kill the agent pauses at its next safe point (``heartbeat``, ``checkpoint``, ``sleep`` or
the guarded ``send_batch``) and reports what it had done; on resume it continues where it
stopped. Restarted with the same ``--instance`` it continues from its last checkpoint. Every
email id it sends is appended to ``--log``, so a test can check that each went out exactly once.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import TextIO

from agent_sdk import Agent

URI = "agent://myorg/production/email-campaign"


def say(text: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {text}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--instance", default=None, help="Stable instance id, e.g. us-central1-a.")
    parser.add_argument("--emails", type=int, default=1000, help="Emails this instance sends in all.")
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--delay", type=float, default=0.1, help="Seconds between batches.")
    parser.add_argument("--log", type=Path, default=None, help="Append each sent email id here.")
    parser.add_argument("--heartbeat-interval", type=float, default=0.5)
    args = parser.parse_args(argv)

    log: TextIO = open(args.log, "a", encoding="utf-8") if args.log else open(os.devnull, "w")  # noqa: SIM115
    batches = -(-args.emails // args.batch_size)
    with (
        log,
        Agent(
            URI, instance=args.instance, on_kill="pause", heartbeat_interval=args.heartbeat_interval
        ) as agent,
    ):
        state = agent.restore() or {"batch": 0, "sent": 0}
        start, sent = int(state["batch"]), int(state["sent"])
        say(f"{agent.instance}: started at batch {start + 1}/{batches} ({sent} emails already sent)")

        @agent.guard
        def send_batch(batch: int) -> int:
            """The side effect: refuses to run while a kill is in force."""
            first = batch * args.batch_size
            last = min(first + args.batch_size, args.emails)
            for n in range(first, last):
                log.write(f"{agent.instance}:{n}\n")
            log.flush()
            return last - first

        for batch in range(start, batches):
            agent.heartbeat(metadata={"batch": batch + 1, "sent": sent})
            sent += send_batch(batch)
            agent.checkpoint({"batch": batch + 1, "sent": sent})
            agent.heartbeat(metadata={"batch": batch + 1, "sent": sent})
            say(f"{agent.instance}: sent batch {batch + 1}/{batches} ({sent} emails)")
            agent.sleep(args.delay)
        say(f"{agent.instance}: done, {sent} emails sent")
    return 0


if __name__ == "__main__":
    sys.exit(main())

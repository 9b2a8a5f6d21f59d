"""Quick start, agent side: a loop with a kill switch, a checkpoint per step, resume in place."""

import os

from agent_sdk import Agent

STEPS = int(os.environ.get("STEPS", "50"))

with Agent("agent://acme/prod/mailer", instance="replica-1", on_kill="pause") as agent:
    state = agent.restore() or {"step": 0, "sent": 0}  # the last checkpoint of replica-1

    @agent.guard  # refuses to run while a kill is in force
    def send_email(n: int) -> None:
        print(f"sent email {n}", flush=True)

    for step in range(state["step"], STEPS):
        agent.heartbeat(metadata={"step": step, "sent": state["sent"]})  # safe point: pauses on kill
        send_email(step)
        state = {"step": step + 1, "sent": state["sent"] + 1}
        agent.checkpoint(state)  # durable; a restart or resume continues from here
        agent.sleep(0.05)  # a safe-point sleep: wakes at once on a kill

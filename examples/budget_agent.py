"""Budgets that hold: spend before each email; when the policy's budget is gone, the agent stops."""

from agent_sdk import Agent, AgentKilled

with Agent("agent://acme/prod/mailer", instance="replica-1") as agent:

    @agent.guard(cost={"emails": 1})  # spends one email from the lease before each call
    def send_email(n: int) -> None:
        print(f"sent email {n}", flush=True)

    sent = 0
    try:
        while True:
            send_email(sent)
            sent += 1
    except AgentKilled as stop:  # the budget is gone: the policy killed this agent
        print(f"stopped after {sent} emails: {stop}", flush=True)

"""Tests of the framework integrations (agent_sdk.integrations), against a real nats-server."""

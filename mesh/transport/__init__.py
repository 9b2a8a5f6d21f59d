"""The NATS boundary: the only layer of agent-mesh that imports nats-py."""

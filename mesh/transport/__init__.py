"""The NATS boundary: the only layer that imports nats-py (besides the controller's nats.micro service)."""

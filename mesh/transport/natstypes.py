"""The nats-py types other layers name, re-exported: outside mesh/transport nothing imports nats-py."""

from __future__ import annotations

import nats as nats_py
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, PubAck, RawStreamMsg
from nats.js.kv import KeyValue

__all__ = [
    "AckPolicy",
    "Client",
    "ConsumerConfig",
    "DeliverPolicy",
    "JetStreamContext",
    "KeyValue",
    "Msg",
    "PubAck",
    "PullSubscription",
    "RawStreamMsg",
    "Subscription",
    "nats_py",
]

PullSubscription = JetStreamContext.PullSubscription
# ``nats_py``: for a module that still names nats-py's exceptions (agent_sdk/core.py, until its
# bucket opening goes through mesh.transport.kvops.open_bucket, which says them as mesh errors).

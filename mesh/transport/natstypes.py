"""The nats-py types other layers name, re-exported: outside mesh/transport nothing imports nats-py."""

from __future__ import annotations

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
]

PullSubscription = JetStreamContext.PullSubscription

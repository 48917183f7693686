"""callbridge.bus: the event bus (in-process now, NATS later) behind one interface."""

from callbridge.bus.base import (
    BusClosedError,
    BusError,
    Event,
    EventBus,
    Subscription,
    SubscriptionClosed,
    make_topic,
    topic_matches,
    validate_topic,
)
from callbridge.bus.inprocess import InProcessBus

__all__ = [
    "BusClosedError",
    "BusError",
    "Event",
    "EventBus",
    "InProcessBus",
    "Subscription",
    "SubscriptionClosed",
    "make_topic",
    "topic_matches",
    "validate_topic",
]

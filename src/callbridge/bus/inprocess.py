"""An event bus inside one process (one event loop).

It behaves like the network bus will: events are encoded to bytes once per publish and
every subscriber decodes its own copy, so code written against it cannot come to rely on
sharing objects between publisher and subscribers.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from callbridge.bus.base import (
    BusClosedError,
    Event,
    EventBus,
    Subscription,
    topic_prefixes,
    validate_prefix,
)
from callbridge.observability.metrics import BUS_EVENTS_PUBLISHED


class InProcessBus(EventBus):
    """:class:`EventBus` for a single process. All calls must come from one event loop.

    Subscriptions are indexed by prefix, so a publish costs one dictionary look-up per topic
    token plus one non-blocking queue append per matching subscriber, whatever the total
    number of subscriptions.
    """

    def __init__(self) -> None:
        self._by_prefix: defaultdict[str, set[Subscription]] = defaultdict(set)
        self._started = False
        self._closed = False

    @property
    def running(self) -> bool:
        return self._started and not self._closed

    async def start(self) -> None:
        if self._closed:
            raise BusClosedError("the event bus was closed and cannot be restarted")
        self._started = True

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        subscriptions = [s for subs in self._by_prefix.values() for s in subs]
        self._by_prefix.clear()
        for sub in subscriptions:
            sub.close()

    async def publish(
        self, topic: str, type: str, data: dict[str, Any], *, workspace_id: str
    ) -> Event:
        self._check_running("publish")
        _, payload = self.encode_event(topic, type, data, workspace_id)
        BUS_EVENTS_PUBLISHED.inc()
        for prefix in topic_prefixes(topic):
            subs = self._by_prefix.get(prefix)
            if subs:
                # Copy: a subscriber's close() during delivery must not disturb this loop.
                for sub in tuple(subs):
                    sub.deliver(payload)
        # Hand back what subscribers see (data round-tripped through JSON), not the
        # caller's dict, so the publisher cannot alias a subscriber's view either.
        return Event.from_bytes(payload)

    def subscribe(self, prefix: str, *, maxsize: int = 1000) -> Subscription:
        self._check_running("subscribe")
        validate_prefix(prefix)
        sub = Subscription(prefix, maxsize=maxsize, on_close=self._forget)
        self._by_prefix[prefix].add(sub)
        return sub

    def subscription_count(self) -> int:
        """Open subscriptions (for diagnostics and tests)."""
        return sum(len(subs) for subs in self._by_prefix.values())

    def _forget(self, sub: Subscription) -> None:
        subs = self._by_prefix.get(sub.prefix)
        if subs is None:
            return
        subs.discard(sub)
        if not subs:
            del self._by_prefix[sub.prefix]

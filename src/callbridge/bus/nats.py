"""The event bus on NATS: the same contract as :class:`InProcessBus`, across processes.

Every callbridge process of a cluster connects to the same NATS server (or cluster) and
publishes each event once, as the bytes of :meth:`Event.to_bytes`, on the subject
``<namespace>.<topic>`` (``callbridge.ws.<workspace>.call.<id>.call_ringing``). The namespace
lets several installations, or other applications, share one NATS without seeing each
other's events.

A subscription to prefix ``p`` is two NATS subscriptions, ``<ns>.p`` and ``<ns>.p.>``, so it
gets exactly the topics :func:`~callbridge.bus.base.topic_matches` accepts (the empty prefix
is ``<ns>.>``); NATS wildcards can never appear in a topic (:func:`validate_topic`), so a
publisher cannot address more than its own subject.

Delivery keeps the in-process semantics: at most once, per-subscriber bounded queues that
drop the newest event on overflow (counted), publishers never slowed by a slow subscriber.
NATS itself protects the connection with its own pending limits (a slow consumer there is
logged and counted by the client). Core NATS (not JetStream) is the right tool: events are
notifications, and state that must not be missed is read back from the store.

:meth:`Subscription.ready` waits until the server has registered the subscription (a
round-trip ``flush``), so ``async with bus.subscribe(p) as sub`` receives every event
published after it returns, from any process.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from callbridge.bus.base import (
    BusClosedError,
    BusError,
    Event,
    EventBus,
    Subscription,
    validate_prefix,
    validate_topic,
)
from callbridge.observability.metrics import BUS_EVENTS_PUBLISHED

__all__ = ["DEFAULT_NAMESPACE", "NatsBus"]

log = structlog.get_logger(__name__)

#: Subject prefix of callbridge's events on a shared NATS.
DEFAULT_NAMESPACE = "callbridge"
#: Largest event accepted on publish; NATS's default max_payload is 1 MiB.
MAX_EVENT_BYTES = 512 * 1024


def subjects_for(namespace: str, prefix: str) -> tuple[str, ...]:
    """The NATS subjects that together match exactly the topics below ``prefix``."""
    if not prefix:
        return (f"{namespace}.>",)
    return (f"{namespace}.{prefix}", f"{namespace}.{prefix}.>")


class _NatsSubscription(Subscription):
    """A :class:`Subscription` fed by NATS subscriptions registered in the background."""

    def __init__(self, bus: NatsBus, prefix: str, maxsize: int) -> None:
        super().__init__(prefix, maxsize=maxsize, on_close=bus._forget)
        self._registered: asyncio.Task[list[Any]] = asyncio.get_running_loop().create_task(
            bus._register(self)
        )

    async def ready(self) -> None:
        try:
            await asyncio.shield(self._registered)
        except asyncio.CancelledError:
            if self._registered.cancelled() and self.closed:
                return  # closed before it was registered: nothing to wait for
            raise


class NatsBus(EventBus):
    """:class:`EventBus` over a NATS server (``nats://host:4222``).

    ``connect_timeout`` bounds :meth:`start`; the client then reconnects on its own (events
    published while disconnected are buffered by the client up to its limit, then dropped).
    Credentials may be given in the URL (``nats://user:password@host:4222``); they are
    never logged.
    """

    def __init__(
        self,
        url: str = "nats://127.0.0.1:4222",
        *,
        namespace: str = DEFAULT_NAMESPACE,
        name: str = "callbridge",
        connect_timeout: float = 2.0,
    ) -> None:
        validate_topic(namespace)
        self._url = url
        self._namespace = namespace
        self._name = name
        self._connect_timeout = connect_timeout
        self._nc: Any = None
        self._subs: dict[_NatsSubscription, list[Any]] = {}
        self._pending: set[asyncio.Task[None]] = set()
        self._started = False
        self._closed = False

    @property
    def running(self) -> bool:
        return self._started and not self._closed

    async def start(self) -> None:
        if self._closed:
            raise BusClosedError("the event bus was closed and cannot be restarted")
        if self._started:
            return
        from nats.aio.client import Client

        async def on_error(exc: Exception) -> None:
            log.warning("nats bus error", error=type(exc).__name__)

        nc = Client()
        try:
            # The client retries forever (it must, once running: NATS restarts are survived),
            # so the first connection is bounded here.
            async with asyncio.timeout(self._connect_timeout + 1):
                await nc.connect(
                    self._url,
                    name=self._name,
                    connect_timeout=max(1, round(self._connect_timeout)),
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=1,
                    error_cb=on_error,
                )
        except Exception as exc:  # nats raises several unrelated types; all mean "no bus"
            await nc.close()
            raise BusError(f"cannot connect to the NATS bus: {type(exc).__name__}") from None
        self._nc = nc
        self._started = True

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for sub in list(self._subs):
            sub.close()
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        if self._nc is not None:
            try:
                await self._nc.drain()
            except Exception:  # already closed or disconnected: nothing left to flush
                await self._nc.close()

    async def publish(
        self, topic: str, type: str, data: dict[str, Any], *, workspace_id: str
    ) -> Event:
        self._check_running("publish")
        _, payload = self.encode_event(topic, type, data, workspace_id)
        if len(payload) > MAX_EVENT_BYTES:
            raise ValueError(f"event {type!r} is {len(payload)} bytes, over {MAX_EVENT_BYTES}")
        # Buffered by the client and written by its flusher task: never waits for the
        # server or for any subscriber.
        await self._nc.publish(f"{self._namespace}.{topic}", payload)
        BUS_EVENTS_PUBLISHED.inc()
        return Event.from_bytes(payload)

    def subscribe(self, prefix: str, *, maxsize: int = 1000) -> Subscription:
        self._check_running("subscribe")
        validate_prefix(prefix)
        sub = _NatsSubscription(self, prefix, maxsize)
        self._subs[sub] = []
        return sub

    def subscription_count(self) -> int:
        """Open subscriptions (for diagnostics and tests)."""
        return len(self._subs)

    async def _register(self, sub: _NatsSubscription) -> list[Any]:
        async def on_message(msg: Any) -> None:
            sub.deliver(msg.data)

        handles = []
        try:
            for subject in subjects_for(self._namespace, sub.prefix):
                handles.append(await self._nc.subscribe(subject, cb=on_message))
            await self._nc.flush(timeout=self._connect_timeout)
        except BaseException:
            for handle in handles:
                await _unsubscribe(handle)
            raise
        if sub.closed:  # closed while registering
            for handle in handles:
                await _unsubscribe(handle)
            return []
        self._subs[sub] = handles
        return handles

    def _forget(self, sub: Subscription) -> None:
        assert isinstance(sub, _NatsSubscription)
        handles = self._subs.pop(sub, [])
        if not sub._registered.done():
            sub._registered.cancel()
        if handles:
            task = asyncio.get_running_loop().create_task(_unsubscribe_all(handles))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)


async def _unsubscribe(handle: Any) -> None:
    try:
        await handle.unsubscribe()
    except Exception:  # the connection is gone: the server dropped it already
        return


async def _unsubscribe_all(handles: list[Any]) -> None:
    for handle in handles:
        await _unsubscribe(handle)

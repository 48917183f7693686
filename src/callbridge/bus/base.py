"""The event bus contract: events, topics, subscriptions.

Topics are hierarchical, NATS-subject compatible strings: tokens of ``[A-Za-z0-9_-]+`` joined
by ``.``, no wildcards. Resource events use :func:`make_topic`::

    ws.<workspace_id>.<resource>.<resource_id>.<event_type>

A subscription names a *prefix* and receives every event whose topic starts with it on a token
boundary (``ws.a`` gets ``ws.a.call.x`` but not ``ws.ab.call.x``; the empty prefix gets
everything). A NATS implementation maps prefix ``p`` to the two subjects ``p`` and ``p.>``
(and ``""`` to ``>``), so both implementations deliver exactly the same events.

Delivery is at-most-once, best effort, per subscriber: each subscription has a bounded queue;
when it is full the new event is dropped for that subscriber only, counted in
:attr:`Subscription.dropped` and in the ``callbridge_bus_events_dropped_total`` metric.
Publishers are never slowed down or failed by a slow subscriber. Consumers that must not miss
state recover it from the store (REST), as the platform API prescribes.

Events cross the bus as bytes (:meth:`Event.to_bytes`); every subscriber decodes its own copy,
so no two consumers ever share a mutable object.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from callbridge.observability.metrics import BUS_EVENTS_DROPPED

_SEGMENT = r"[A-Za-z0-9_-]+"
_TOKEN_RE = re.compile(_SEGMENT)
_TOPIC_RE = re.compile(rf"{_SEGMENT}(?:\.{_SEGMENT})*")
#: Longest accepted topic; generous for ``ws.<uuid>.<resource>.<uuid>.<event_type>``.
MAX_TOPIC_LENGTH = 255


class BusError(RuntimeError):
    """The bus cannot do what was asked (not started, already closed, …)."""


class BusClosedError(BusError):
    """Publish or subscribe on a bus that is closed (or not started yet)."""


class SubscriptionClosed(Exception):
    """:meth:`Subscription.get` on a subscription that was closed (by itself or its bus)."""


def validate_topic(topic: str) -> str:
    """Return ``topic`` if valid, else raise :class:`ValueError` saying why.

    Valid: one or more tokens of ``[A-Za-z0-9_-]+`` joined by single dots, at most
    :data:`MAX_TOPIC_LENGTH` characters. NATS wildcards (``*``, ``>``) are not tokens, so a
    published topic can never address more than itself.
    """
    if not isinstance(topic, str) or not topic:
        raise ValueError("a topic must be a non-empty string")
    if len(topic) > MAX_TOPIC_LENGTH:
        raise ValueError(f"topic longer than {MAX_TOPIC_LENGTH} characters")
    if not _TOPIC_RE.fullmatch(topic):
        raise ValueError(
            f"invalid topic {topic!r}: tokens of [A-Za-z0-9_-] joined by '.', no wildcards"
        )
    return topic


def validate_prefix(prefix: str) -> str:
    """Like :func:`validate_topic`, but the empty prefix (= everything) is allowed."""
    if prefix == "":
        return prefix
    return validate_topic(prefix)


def topic_matches(prefix: str, topic: str) -> bool:
    """True when ``topic`` is ``prefix`` or lies below it on a token boundary."""
    if not prefix:
        return True
    return topic == prefix or topic.startswith(prefix + ".")


def topic_prefixes(topic: str) -> list[str]:
    """Every prefix that matches ``topic``: ``""``, the first token, the first two, …, itself."""
    prefixes = [""]
    start = 0
    while True:
        dot = topic.find(".", start)
        if dot < 0:
            prefixes.append(topic)
            return prefixes
        prefixes.append(topic[:dot])
        start = dot + 1


def _token(value: object, what: str) -> str:
    text = str(value)
    if not _TOKEN_RE.fullmatch(text):
        raise ValueError(f"{what} {text!r} is not a topic token ([A-Za-z0-9_-]+)")
    return text


def make_topic(
    workspace_id: uuid.UUID | str,
    resource: str,
    resource_id: uuid.UUID | str,
    event_type: str,
) -> str:
    """``ws.<workspace_id>.<resource>.<resource_id>.<event_type>``, every part validated.

    Subscribing to ``ws.<wid>`` receives all events of a workspace, ``ws.<wid>.call`` all call
    events, ``ws.<wid>.call.<id>`` all events of one call.
    """
    return ".".join(
        (
            "ws",
            _token(workspace_id, "workspace id"),
            _token(resource, "resource"),
            _token(resource_id, "resource id"),
            _token(event_type, "event type"),
        )
    )


@dataclass(frozen=True, slots=True)
class Event:
    """One event as carried by the bus.

    ``type`` is the platform event type (``call_progressing``), ``topic`` where it was
    published, ``workspace_id`` its tenant (a string, as on the wire), ``ts`` the publish time
    in epoch seconds and ``data`` a JSON-serialisable object (usually the resource's JSON form).
    """

    id: str
    type: str
    topic: str
    workspace_id: str
    ts: float
    data: dict[str, Any] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        """Compact UTF-8 JSON. :class:`ValueError` when ``data`` is not JSON-serialisable."""
        try:
            text = json.dumps(
                {
                    "id": self.id,
                    "type": self.type,
                    "topic": self.topic,
                    "workspace_id": self.workspace_id,
                    "ts": self.ts,
                    "data": self.data,
                },
                separators=(",", ":"),
                ensure_ascii=False,
                allow_nan=False,
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"event {self.type!r}: data is not JSON-serialisable: {exc}") from exc
        return text.encode("utf-8")

    @classmethod
    def from_bytes(cls, payload: bytes) -> Event:
        """Decode :meth:`to_bytes` output; :class:`ValueError` if malformed."""
        try:
            obj = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"event payload is not JSON: {exc}") from exc
        if not isinstance(obj, dict):
            raise ValueError("event payload must be a JSON object")
        try:
            id_, type_, topic = obj["id"], obj["type"], obj["topic"]
            workspace_id, ts, data = obj["workspace_id"], obj["ts"], obj["data"]
        except KeyError as exc:
            raise ValueError(f"event payload lacks {exc.args[0]!r}") from exc
        if not all(isinstance(v, str) for v in (id_, type_, topic, workspace_id)):
            raise ValueError("event id, type, topic and workspace_id must be strings")
        if isinstance(ts, bool) or not isinstance(ts, int | float):
            raise ValueError("event ts must be a number")
        if not isinstance(data, dict):
            raise ValueError("event data must be a JSON object")
        return cls(
            id=id_, type=type_, topic=topic, workspace_id=workspace_id, ts=float(ts), data=data
        )


class Subscription:
    """A bounded stream of the events below one topic prefix.

    Iterate it (``async for event in sub``) or call :meth:`get`. Both end once the
    subscription is closed — by :meth:`close`, by leaving ``async with``, or by the bus
    closing; events still queued at that moment are discarded. Must be used from the event
    loop thread of its bus.
    """

    def __init__(
        self,
        prefix: str,
        *,
        maxsize: int = 1000,
        on_close: Callable[[Subscription], None] | None = None,
    ) -> None:
        if maxsize < 1:
            raise ValueError("subscription maxsize must be at least 1")
        self.prefix = validate_prefix(prefix)
        self.maxsize = maxsize
        #: Events this subscriber lost because its queue was full.
        self.dropped = 0
        self._queue: collections.deque[bytes] = collections.deque()
        self._wakeup = asyncio.Event()
        self._closed = False
        self._on_close = on_close

    @property
    def closed(self) -> bool:
        return self._closed

    def qsize(self) -> int:
        """Events waiting to be read."""
        return len(self._queue)

    def deliver(self, payload: bytes) -> bool:
        """Queue an encoded event without blocking; False if dropped (queue full) or closed.

        Called by bus implementations only.
        """
        if self._closed:
            return False
        if len(self._queue) >= self.maxsize:
            # Drop the newest: what is queued stays in order, and the consumer notices a gap
            # rather than a reordering.
            self.dropped += 1
            BUS_EVENTS_DROPPED.inc()
            return False
        self._queue.append(payload)
        self._wakeup.set()
        return True

    async def ready(self) -> None:
        """Wait until the subscription receives events published from now on.

        Immediate for the in-process bus; a network bus registers the subscription with the
        server first. ``async with bus.subscribe(p) as sub`` awaits this for you.
        """

    # The timeout parameter is the documented interface (mirrors asyncio.Queue-style APIs).
    async def get(self, timeout: float | None = None) -> Event:  # noqa: ASYNC109
        """The next event (decoded afresh for this subscriber).

        Raises :class:`TimeoutError` after ``timeout`` seconds without an event and
        :class:`SubscriptionClosed` once the subscription is closed.
        """
        async with asyncio.timeout(timeout):
            while True:
                if self._closed:
                    raise SubscriptionClosed(f"subscription {self.prefix!r} is closed")
                if self._queue:
                    payload = self._queue.popleft()
                    if not self._queue:
                        self._wakeup.clear()
                    return Event.from_bytes(payload)
                self._wakeup.clear()
                await self._wakeup.wait()

    def close(self) -> None:
        """Stop receiving; pending and future events are discarded. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._queue.clear()
        self._wakeup.set()  # wake every waiting get() so it sees the closed state
        if self._on_close is not None:
            on_close, self._on_close = self._on_close, None
            on_close(self)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Event:
        try:
            return await self.get()
        except SubscriptionClosed:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> Self:
        await self.ready()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._queue)}/{self.maxsize}"
        return f"<Subscription {self.prefix!r} {state} dropped={self.dropped}>"


class EventBus(abc.ABC):
    """Publish/subscribe between the parts of callbridge (and later between processes).

    Lifecycle: :meth:`start` before use, :meth:`close` at shutdown (or ``async with``).
    Publishing or subscribing outside that window raises :class:`BusClosedError`.
    """

    @abc.abstractmethod
    async def start(self) -> None:
        """Connect / get ready. Idempotent."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close every subscription (their iterations end) and refuse further use. Idempotent."""

    @abc.abstractmethod
    async def publish(
        self, topic: str, type: str, data: dict[str, Any], *, workspace_id: str
    ) -> Event:
        """Publish an event and return it as subscribers will see it.

        Never blocks on, nor fails because of, a slow subscriber. Raises :class:`ValueError`
        for an invalid topic or type or non-JSON ``data``, :class:`BusClosedError` when the
        bus is not running.
        """

    _started: bool = False
    _closed: bool = False

    def _check_running(self, what: str) -> None:
        """:class:`BusClosedError` unless the bus is between :meth:`start` and :meth:`close`."""
        if self._closed:
            raise BusClosedError(f"cannot {what}: the event bus is closed")
        if not self._started:
            raise BusClosedError(f"cannot {what}: the event bus is not started (call start())")

    @staticmethod
    def encode_event(
        topic: str, type: str, data: dict[str, Any], workspace_id: str
    ) -> tuple[Event, bytes]:
        """Validate a publish's arguments and build the event and its wire bytes (the same for
        every implementation). :class:`ValueError` on invalid input."""
        validate_topic(topic)
        validate_event_type(type)
        if not isinstance(data, dict):
            raise ValueError("event data must be a dict (a JSON object)")
        event = Event(
            id=str(uuid.uuid4()),
            type=type,
            topic=topic,
            workspace_id=str(workspace_id),
            ts=time.time(),
            data=data,
        )
        return event, event.to_bytes()

    @abc.abstractmethod
    def subscribe(self, prefix: str, *, maxsize: int = 1000) -> Subscription:
        """Receive events whose topic is ``prefix`` or below it (``""`` = everything).

        ``maxsize`` bounds the subscriber's queue (overflow drops and counts).
        """

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def validate_event_type(type_: str) -> str:
    """Event types are single topic tokens (``call_progressing``)."""
    if not isinstance(type_, str) or not _TOKEN_RE.fullmatch(type_):
        raise ValueError(f"invalid event type {type_!r}: expected [A-Za-z0-9_-]+")
    return type_

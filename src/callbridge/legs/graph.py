"""The per-call media graph.

::

                    ┌──────────────► consumer "echo"       (bounded queue)
    leg inbound ────┼──────────────► consumer "transcribe" (bounded queue)
                    └──────────────► consumer …
    producer "flow"   ─► PlayoutBuffer ─┐
    producer "rtvbp"  ─► PlayoutBuffer ─┼─► mix ─► leg outbound (pulled once per 20 ms)
    producer "speak"  ─► PlayoutBuffer ─┘

* **Fan-out**: every inbound frame is offered to each consumer's own bounded queue. A full
  queue drops its *oldest* frame (live audio: fresher is better) and counts it; a slow consumer
  never stalls the leg or the other consumers.
* **Fan-in**: each producer owns a :class:`~callbridge.media.playout.PlayoutBuffer`; the leg's
  clock pulls one frame per tick through :meth:`MediaGraph.next_outbound_frame`, which ticks
  every producer once and mixes what they emitted (saturating sum). Clearing one producer
  (barge-in) drops only its own unplayed audio.
* Marks are resolved into asyncio futures here, so a flow can ``await`` "this prompt was heard".
* **Taps** see frames synchronously on the leg's tick, without a queue: inbound taps each
  received frame (the RTVBP bridge forwards it), outbound taps each mixed frame (recordings).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable

import structlog

from callbridge.legs.base import DtmfEvent, LegEnd, LegState
from callbridge.media.constants import FRAME_BYTES, SILENCE_FRAME
from callbridge.media.mixer import mix
from callbridge.media.playout import PlayoutBuffer
from callbridge.observability.metrics import MEDIA_FRAMES_DROPPED, PLAYOUT_UNDERRUNS

log = structlog.get_logger("callbridge.legs.graph")

#: Default depth of a consumer queue: 50 frames = 1 s of audio.
DEFAULT_CONSUMER_FRAMES = 50


class FrameConsumer:
    """A bounded, drop-oldest queue of inbound frames, iterable with ``async for``."""

    def __init__(self, graph: MediaGraph, name: str, kind: str, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("a consumer queue holds at least one frame")
        self.name = name
        self.kind = kind
        self._graph = graph
        self._frames: deque[bytes] = deque()
        self._maxsize = maxsize
        self._wakeup = asyncio.Event()
        self._closed = False
        self.dropped = 0
        self.received = 0

    def offer(self, frame: bytes) -> None:
        if self._closed:
            return
        if len(self._frames) >= self._maxsize:
            self._frames.popleft()
            self.dropped += 1
            MEDIA_FRAMES_DROPPED.labels(consumer=self.kind).inc()
        self._frames.append(frame)
        self.received += 1
        self._wakeup.set()

    @property
    def queued(self) -> int:
        return len(self._frames)

    @property
    def closed(self) -> bool:
        return self._closed

    async def get(self) -> bytes | None:
        """The next frame, or ``None`` once the consumer is closed and drained."""
        while not self._frames:
            if self._closed:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()
        return self._frames.popleft()

    def get_nowait(self) -> bytes | None:
        """The next queued frame, or ``None`` when none is queued (never waits)."""
        return self._frames.popleft() if self._frames else None

    def close(self) -> None:
        """Stop receiving; pending frames can still be read. Idempotent."""
        if not self._closed:
            self._closed = True
            self._wakeup.set()
            self._graph._remove_consumer(self)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[bytes]:
        while (frame := await self.get()) is not None:
            yield frame


class Producer:
    """An outbound audio source of one call: queue audio, place marks, clear on barge-in."""

    def __init__(self, graph: MediaGraph, name: str, max_lead_seconds: float) -> None:
        self.name = name
        self._graph = graph
        self.buffer = PlayoutBuffer(max_lead_seconds=max_lead_seconds)
        self._marks: dict[str, asyncio.Future[str]] = {}
        self._mark_seq = 0
        self._closed = False

    def enqueue(self, pcm: bytes) -> None:
        """Queue PCM16 audio (any length). Raises ``PlayoutOverflow`` beyond the lead limit."""
        if self._closed:
            raise RuntimeError(f"producer {self.name!r} is closed")
        self.buffer.enqueue(pcm)

    def mark(self) -> asyncio.Future[str]:
        """A future resolved with ``"played"`` once everything queued so far has been played,
        or ``"cleared"`` if a clear (or close) drops it first."""
        self._mark_seq += 1
        name = f"{self.name}#{self._mark_seq}"
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._marks[name] = fut
        self.buffer.mark(name)
        return fut

    async def play(self, pcm: bytes) -> bool:
        """Queue ``pcm`` and wait until it has been heard; ``False`` if it was cleared."""
        self.enqueue(pcm)
        return await self.mark() == "played"

    def clear(self) -> int:
        """Drop unplayed audio; returns the number of audio bytes dropped."""
        result = self.buffer.clear()
        for mark in result.cleared_marks:
            self._resolve(mark.name, "cleared")
        return result.dropped_bytes

    @property
    def queued_bytes(self) -> int:
        return self.buffer.queued_bytes

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> int:
        """Clear and detach from the graph. Idempotent; returns bytes dropped."""
        if self._closed:
            return 0
        dropped = self.clear()
        self._closed = True
        self._graph._remove_producer(self)
        return dropped

    def _tick(self) -> tuple[bytes, int]:
        tick = self.buffer.tick()
        for mark in tick.marks:
            self._resolve(mark.name, mark.status)
        if tick.underrun:
            PLAYOUT_UNDERRUNS.inc()
        return tick.pcm, tick.audio_bytes

    def _resolve(self, name: str, status: str) -> None:
        fut = self._marks.pop(name, None)
        if fut is not None and not fut.done():
            fut.set_result(status)


DtmfCallback = Callable[[DtmfEvent], None]
#: Sees every outbound frame (after mixing) on the leg's clock; must be cheap and not block.
OutboundTap = Callable[[bytes], None]
#: Sees every inbound frame synchronously on the leg's clock; must be cheap and not block.
InboundTap = Callable[[bytes], None]
StateCallback = Callable[[LegState, LegEnd | None], None]


class MediaGraph:
    """Fan-out of one leg's inbound audio and mix of its outbound producers.

    Implements :class:`~callbridge.legs.base.LegListener`; DTMF and state changes are passed
    on to the callbacks the call service registers.
    """

    def __init__(
        self,
        *,
        max_lead_seconds: float = 10.0,
        on_dtmf: DtmfCallback | None = None,
        on_state: StateCallback | None = None,
    ) -> None:
        self._max_lead = max_lead_seconds
        self._consumers: list[FrameConsumer] = []
        self._producers: dict[str, Producer] = {}
        self._dtmf_listeners: list[DtmfCallback] = [on_dtmf] if on_dtmf else []
        self._outbound_taps: list[OutboundTap] = []
        self._inbound_taps: list[InboundTap] = []
        self._on_state = on_state
        self._closed = asyncio.Event()
        self.inbound_frames = 0
        self.outbound_frames = 0

    def set_state_callback(self, on_state: StateCallback | None) -> None:
        """Where the leg's state changes go (the call service's handler)."""
        self._on_state = on_state

    def release(self) -> None:
        """Drop every callback (state, DTMF, taps) once the call has ended.

        The call service's callbacks reference the live call, which references this graph;
        dropping them lets an ended call be freed by reference counting instead of waiting
        for the cyclic garbage collector (decision 024). Idempotent.
        """
        self._on_state = None
        self._dtmf_listeners.clear()
        self._outbound_taps.clear()
        self._inbound_taps.clear()

    # -- topology ----------------------------------------------------------------------------
    def add_consumer(
        self, name: str, *, kind: str | None = None, maxsize: int = DEFAULT_CONSUMER_FRAMES
    ) -> FrameConsumer:
        """A new consumer of inbound frames. ``kind`` (a bounded set) labels its drop metric."""
        consumer = FrameConsumer(self, name, kind or name, maxsize)
        self._consumers.append(consumer)
        return consumer

    def producer(self, name: str) -> Producer:
        """The producer called ``name``, created on first use."""
        prod = self._producers.get(name)
        if prod is None:
            prod = Producer(self, name, self._max_lead)
            self._producers[name] = prod
        return prod

    def add_dtmf_listener(self, callback: DtmfCallback) -> Callable[[], None]:
        """Register ``callback`` for key presses; returns a function that unregisters it."""
        self._dtmf_listeners.append(callback)

        def remove() -> None:
            if callback in self._dtmf_listeners:
                self._dtmf_listeners.remove(callback)

        return remove

    def add_outbound_tap(self, tap: OutboundTap) -> Callable[[], None]:
        """Observe every outbound frame (what the leg plays); returns the remover.

        The tap runs synchronously inside the leg's tick with the mixed 320-byte frame, so it
        must only queue the frame (recordings do). A tap that raises is removed (and the
        frame still goes out). With no tap attached the cost is one empty-list test per tick.
        """
        self._outbound_taps.append(tap)

        def remove() -> None:
            if tap in self._outbound_taps:
                self._outbound_taps.remove(tap)

        return remove

    def add_inbound_tap(self, tap: InboundTap) -> Callable[[], None]:
        """Observe every inbound frame synchronously; returns the remover.

        For forwarders whose per-frame work is only queueing bytes (the RTVBP bridge hands
        the frame to its session's outbox): no queue and no task wake-up per frame, unlike a
        :class:`FrameConsumer`. A tap that raises is removed.
        """
        self._inbound_taps.append(tap)

        def remove() -> None:
            if tap in self._inbound_taps:
                self._inbound_taps.remove(tap)

        return remove

    @property
    def consumers(self) -> tuple[FrameConsumer, ...]:
        return tuple(self._consumers)

    @property
    def producers(self) -> tuple[Producer, ...]:
        return tuple(self._producers.values())

    def clear_outbound(self) -> int:
        """Drop every producer's unplayed audio (bytes dropped, all producers)."""
        return sum(p.clear() for p in self._producers.values())

    def close(self) -> None:
        """End of the call: consumers stop (their readers drain and finish), producers clear."""
        for consumer in list(self._consumers):
            consumer.close()
        for prod in list(self._producers.values()):
            prod.close()
        self._closed.set()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def wait_closed(self) -> None:
        """Return once :meth:`close` has run (the call's media ended)."""
        await self._closed.wait()

    def _remove_consumer(self, consumer: FrameConsumer) -> None:
        if consumer in self._consumers:
            self._consumers.remove(consumer)

    def _remove_producer(self, producer: Producer) -> None:
        if self._producers.get(producer.name) is producer:
            del self._producers[producer.name]

    # -- LegListener -------------------------------------------------------------------------
    def on_leg_audio(self, frame: bytes) -> None:
        if len(frame) != FRAME_BYTES:
            raise ValueError(f"a leg delivered {len(frame)} bytes; frames are {FRAME_BYTES}")
        self.inbound_frames += 1
        for consumer in self._consumers:
            consumer.offer(frame)
        if self._inbound_taps:
            if len(self._inbound_taps) == 1:  # the usual single tap (echo, a bridge): no copy
                tap = self._inbound_taps[0]
                try:
                    tap(frame)
                except Exception:
                    self._tap_failed(self._inbound_taps, tap)
            else:
                self._run_taps(self._inbound_taps, frame)

    def on_leg_dtmf(self, event: DtmfEvent) -> None:
        for callback in list(self._dtmf_listeners):
            callback(event)

    def on_leg_state(self, state: LegState, end: LegEnd | None) -> None:
        if self._on_state is not None:
            self._on_state(state, end)

    # -- the leg's clock pulls this ----------------------------------------------------------
    def next_outbound_frame(self) -> bytes:
        """Tick every producer once and mix; silence when nobody has audio.

        Outbound taps (:meth:`add_outbound_tap`) see the frame before it is returned.
        """
        self.outbound_frames += 1
        frame = self._mix_outbound()
        if self._outbound_taps:
            self._run_taps(self._outbound_taps, frame)
        return frame

    def _mix_outbound(self) -> bytes:
        if not self._producers:
            return SILENCE_FRAME
        if len(self._producers) == 1:
            pcm, _ = next(iter(self._producers.values()))._tick()
            return pcm
        frames: list[bytes] = []
        for prod in list(self._producers.values()):
            pcm, audio = prod._tick()
            if audio:
                frames.append(pcm)
        if not frames:
            return SILENCE_FRAME
        return mix(frames)

    @classmethod
    def _run_taps(cls, taps: list[Callable[[bytes], None]], frame: bytes) -> None:
        for tap in list(taps):  # a copy: a tap may remove itself (or another) while it runs
            try:
                tap(frame)
            except Exception:
                cls._tap_failed(taps, tap)

    @staticmethod
    def _tap_failed(taps: list[Callable[[bytes], None]], tap: Callable[[bytes], None]) -> None:
        # A faulty observer must never stop the call's audio: it is removed, the frame goes on.
        log.exception("media tap failed and was removed")
        if tap in taps:
            taps.remove(tap)

"""The ``Leg`` interface: one party's media and signalling, as seen by a call.

A leg is the only thing that knows its transport (a SIP/RTP dialog, a WebSocket, a WAV file).
Everything above it — the call's media graph, flows, APIs — talks to this interface:

* **inbound audio**: the leg hands every received 20 ms PCM16 frame to its listener
  (:meth:`LegListener.on_leg_audio`), in order, at real-time pace;
* **outbound audio**: the leg owns the playout clock. Once per 20 ms it pulls exactly one
  frame from the source attached with :meth:`Leg.attach` and sends it. No other component
  paces outbound audio for this leg;
* **DTMF** in (:meth:`LegListener.on_leg_dtmf`) and out (:meth:`Leg.send_dtmf`);
* **state**: an explicit, table-driven state machine reported through
  :meth:`LegListener.on_leg_state`; ending carries a hangup reason and which side ended.
"""

from __future__ import annotations

import abc
import asyncio
import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from callbridge.calls.model import HangupBy, HangupReason, IllegalTransition
from callbridge.media.constants import SILENCE_FRAME


class LegState(enum.StrEnum):
    IDLE = "idle"
    DIALING = "dialing"
    RINGING = "ringing"
    ANSWERED = "answered"
    ENDED = "ended"


LEG_TRANSITIONS: dict[LegState, frozenset[LegState]] = {
    LegState.IDLE: frozenset({LegState.DIALING, LegState.RINGING, LegState.ENDED}),
    LegState.DIALING: frozenset({LegState.RINGING, LegState.ANSWERED, LegState.ENDED}),
    LegState.RINGING: frozenset({LegState.ANSWERED, LegState.ENDED}),
    LegState.ANSWERED: frozenset({LegState.ENDED}),
    LegState.ENDED: frozenset(),
}

#: DTMF symbols of RFC 4733 §3.2 (events 0-15).
DTMF_DIGITS = frozenset("0123456789*#ABCD")


@dataclass(frozen=True, slots=True)
class DtmfEvent:
    """One key press. Times are wall-clock epoch seconds (RTVBP ``pressed_at``/``released_at``)."""

    digit: str
    pressed_at: float
    released_at: float

    @property
    def duration_ms(self) -> int:
        return round((self.released_at - self.pressed_at) * 1000)


@dataclass(frozen=True, slots=True)
class LegEnd:
    """Why a leg ended."""

    reason: HangupReason
    by: HangupBy


class LegListener(Protocol):
    """What a leg reports to (implemented by the call's media graph / call service)."""

    def on_leg_audio(self, frame: bytes) -> None:
        """One inbound 20 ms PCM16 frame (exactly ``FRAME_BYTES``)."""
        ...

    def on_leg_dtmf(self, event: DtmfEvent) -> None:
        """A completed key press."""
        ...

    def on_leg_state(self, state: LegState, end: LegEnd | None) -> None:
        """The leg moved to ``state``; ``end`` is set when ``state`` is ``ENDED``."""
        ...


#: Pulled once per 20 ms tick by the leg: returns the next outbound PCM16 frame.
FrameSource = Callable[[], bytes]


def validate_dtmf(digits: str) -> str:
    """Return ``digits`` upper-cased, or raise ``ValueError`` naming the first bad symbol."""
    norm = digits.upper()
    for ch in norm:
        if ch not in DTMF_DIGITS:
            raise ValueError(f"invalid DTMF digit {ch!r}: expected one of 0-9 * # A-D")
    return norm


class Leg(abc.ABC):
    """Base class holding the state machine; subclasses implement the transport."""

    def __init__(self, leg_id: str) -> None:
        self.id = leg_id
        self._state = LegState.IDLE
        self._listener: LegListener | None = None
        self._source: FrameSource | None = None
        self._end: LegEnd | None = None
        self._ended = asyncio.Event()

    # -- wiring ------------------------------------------------------------------------------
    def attach(self, listener: LegListener, source: FrameSource) -> None:
        """Connect the leg to its call: where inbound media goes, where outbound comes from."""
        self._listener = listener
        self._source = source

    def detach(self) -> None:
        """Disconnect the leg from its call (after it ended): no listener, no source.

        The listener and source usually reference the call that holds this leg; dropping
        them breaks that reference cycle (decision 024). Idempotent.
        """
        self._listener = None
        self._source = None

    @property
    def state(self) -> LegState:
        return self._state

    @property
    def end(self) -> LegEnd | None:
        return self._end

    async def wait_ended(self) -> LegEnd:
        await self._ended.wait()
        assert self._end is not None
        return self._end

    def _set_state(self, target: LegState, end: LegEnd | None = None) -> None:
        """Apply a transition from the table, then tell the listener. Illegal moves raise."""
        if target not in LEG_TRANSITIONS[self._state]:
            raise IllegalTransition("leg", self._state, target)
        self._state = target
        if target is LegState.ENDED:
            self._end = end or LegEnd(HangupReason.NORMAL, HangupBy.LOCAL)
            self._ended.set()
        if self._listener is not None:
            self._listener.on_leg_state(target, self._end if target is LegState.ENDED else None)

    def _next_outbound(self) -> bytes:
        source = self._source
        return source() if source is not None else SILENCE_FRAME

    def _deliver_audio(self, frame: bytes) -> None:
        if self._listener is not None:
            self._listener.on_leg_audio(frame)

    def _deliver_dtmf(self, event: DtmfEvent) -> None:
        if self._listener is not None:
            self._listener.on_leg_dtmf(event)

    # -- transport operations ----------------------------------------------------------------
    @abc.abstractmethod
    async def start(self) -> None:
        """Begin signalling (ring an inbound leg, dial an outbound one)."""

    @abc.abstractmethod
    async def answer(self) -> None:
        """Answer an inbound leg and start media. No-op when already answered."""

    @abc.abstractmethod
    async def hangup(self, reason: HangupReason = HangupReason.NORMAL) -> None:
        """End the leg from our side (``hangup_by`` local). Idempotent."""

    @abc.abstractmethod
    async def send_dtmf(
        self, digits: str, *, duration_ms: int = 100, interval_ms: int = 100
    ) -> None:
        """Send key presses to the party; returns when they have been sent."""

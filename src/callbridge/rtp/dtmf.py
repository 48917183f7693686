"""RFC 4733 telephone-events: payload format, sender and receiver (sans-I/O).

Payload (RFC 4733 §2.3)::

     0                   1                   2                   3
    |     event     |E|R| volume    |          duration             |

Events 0-9 are the digits, 10 ``*``, 11 ``#``, 12-15 ``A``-``D`` (§3.2). ``duration`` counts
timestamp units (8 kHz) since the event's start; ``volume`` is the power in -dBm0 (0-63).

**Sender** (§2.5.1, spec ``sip.md`` §11). :class:`DtmfSender` is driven by the leg's 20 ms clock:
the session asks it once per frame index *n* what to send instead of audio.

* The first packet of an event carries the **M bit**; its RTP timestamp is the audio timestamp
  of the frame where the event starts, and every packet of the event keeps that timestamp
  (§2.5.1.2).
* One update per 20 ms frame with the cumulative duration ``(k + 1) × 160`` for the *k*-th
  frame since the start; skipped frames (a late wake-up) simply make the duration jump, so it
  always reflects elapsed time.
* The end packet (E bit, final duration) is sent **three times**, one per frame, each with a new
  sequence number and the same timestamp and duration (§2.5.1.4).
* While an event plays (start to last end retransmission) no audio is sent.
* Successive digits get their own start frame (so their own timestamp) and at least one audio
  frame separates the last end packet of a digit from the start of the next, even when the
  requested interval is 0.
* Durations are limited to ``MIN_DURATION_MS``-``MAX_DURATION_MS`` (so never beyond the 65535
  units that would require §2.5.1.3 segments), intervals to ``0``-``MAX_INTERVAL_MS``.

**Receiver** (§2.5.2). :class:`DtmfReceiver` identifies an event by SSRC + RTP timestamp. A new
timestamp starts a digit (with or without the M bit: the start packet may be lost), updates
extend it, the first E-bit packet ends it and reports it exactly once; repeated end packets and
late updates of a finished event are ignored. A lost end is tolerated: the digit ends when the
next event starts, or :data:`END_TIMEOUT` seconds after its last packet (:meth:`poll`).
Reported press/release times are wall-clock epoch seconds from the caller's arrival times.
"""

from __future__ import annotations

import math
import struct
from collections import deque
from dataclasses import dataclass
from typing import Final

from callbridge.legs.base import DtmfEvent, validate_dtmf
from callbridge.media.constants import FRAME_MS, SAMPLE_RATE, SAMPLES_PER_FRAME
from callbridge.rtp.packet import ts_diff

__all__ = [
    "DTMF_VOLUME",
    "END_REPEATS",
    "END_TIMEOUT",
    "MAX_DURATION_MS",
    "MAX_INTERVAL_MS",
    "MIN_DURATION_MS",
    "DtmfReceiver",
    "DtmfSender",
    "OutgoingEvent",
    "TelephoneEvent",
    "digit_for_event",
    "event_for_digit",
]

#: Event codes 0-15 in order (RFC 4733 §3.2, Table 7).
_EVENT_SYMBOLS: Final = "0123456789*#ABCD"
#: Volume callbridge sends (-10 dBm0, the usual value for DTMF).
DTMF_VOLUME: Final = 10
#: Times the end packet is sent (RFC 4733 §2.5.1.4).
END_REPEATS: Final = 3
MIN_DURATION_MS: Final = 40
MAX_DURATION_MS: Final = 1000
MAX_INTERVAL_MS: Final = 5000
#: A started event with no packet for this long is ended (lost end packet), in seconds.
END_TIMEOUT: Final = 0.2
#: Finished events remembered to ignore their retransmissions and late updates.
_FINISHED_MEMORY: Final = 32

_PAYLOAD = struct.Struct("!BBH")


def event_for_digit(digit: str) -> int:
    """Event code of a DTMF symbol (``"*"`` → 10); raises ``ValueError`` for other symbols."""
    if len(digit) != 1:
        raise ValueError(f"expected exactly one DTMF symbol, got {digit!r}")
    return _EVENT_SYMBOLS.index(validate_dtmf(digit))


def digit_for_event(event: int) -> str | None:
    """DTMF symbol of an event code, ``None`` for non-DTMF events (16 and up)."""
    return _EVENT_SYMBOLS[event] if 0 <= event < len(_EVENT_SYMBOLS) else None


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """One telephone-event payload (RFC 4733 §2.3)."""

    event: int
    end: bool
    volume: int
    duration: int

    @property
    def digit(self) -> str | None:
        return digit_for_event(self.event)

    def pack(self) -> bytes:
        if not 0 <= self.event < 256:
            raise ValueError(f"event must be 0-255, got {self.event}")
        if not 0 <= self.volume < 64:
            raise ValueError(f"volume must be 0-63, got {self.volume}")
        if not 0 <= self.duration < 1 << 16:
            raise ValueError(f"duration must be 0-65535, got {self.duration}")
        return _PAYLOAD.pack(self.event, (0x80 if self.end else 0) | self.volume, self.duration)

    @classmethod
    def parse(cls, payload: bytes) -> TelephoneEvent:
        """Parse the first event of a payload; ``ValueError`` if shorter than 4 bytes."""
        if len(payload) < _PAYLOAD.size:
            raise ValueError(f"telephone-event payload of {len(payload)} bytes, need 4")
        event, flags, duration = _PAYLOAD.unpack_from(payload)
        return cls(event, bool(flags & 0x80), flags & 0x3F, duration)


# -- sender -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutgoingEvent:
    """What to send for one frame: a telephone-event payload with its RTP marker/timestamp."""

    payload: bytes
    marker: bool
    timestamp: int
    digit: str
    end: bool


@dataclass(slots=True)
class _Pending:
    digit: str
    frames: int  # tone length in 20 ms frames
    interval_frames: int


@dataclass(slots=True)
class _Playing:
    digit: str
    event: int
    start_frame: int
    timestamp: int
    frames: int
    interval_frames: int
    ends_sent: int = 0


class DtmfSender:
    """Schedules RFC 4733 packets on the leg's frame clock (see the module docstring)."""

    def __init__(self, *, volume: int = DTMF_VOLUME) -> None:
        if not 0 <= volume < 64:
            raise ValueError(f"volume must be 0-63, got {volume}")
        self._volume = volume
        self._queue: deque[_Pending] = deque()
        self._playing: _Playing | None = None
        self._next_start: int | None = None  # earliest frame the next digit may start at
        self.queued_total = 0
        self.completed = 0

    def queue(self, digits: str, *, duration_ms: int = 100, interval_ms: int = 100) -> int:
        """Queue key presses; returns the value :attr:`completed` reaches when they are sent.

        Raises ``ValueError`` for unknown symbols or out-of-range duration/interval.
        """
        norm = validate_dtmf(digits)
        if not MIN_DURATION_MS <= duration_ms <= MAX_DURATION_MS:
            raise ValueError(
                f"DTMF duration must be {MIN_DURATION_MS}-{MAX_DURATION_MS} ms, got {duration_ms}"
            )
        if not 0 <= interval_ms <= MAX_INTERVAL_MS:
            raise ValueError(f"DTMF interval must be 0-{MAX_INTERVAL_MS} ms, got {interval_ms}")
        frames = math.ceil(duration_ms / FRAME_MS)
        gap = math.ceil(interval_ms / FRAME_MS)
        for digit in norm:
            self._queue.append(_Pending(digit, frames, gap))
        self.queued_total += len(norm)
        return self.queued_total

    @property
    def playing(self) -> bool:
        """True while an event is being sent (audio must be suppressed)."""
        return self._playing is not None

    @property
    def busy(self) -> bool:
        """True while an event plays or digits wait."""
        return self._playing is not None or bool(self._queue)

    def cancel(self) -> int:
        """Drop digits not yet started (a started one finishes cleanly); returns how many."""
        dropped = len(self._queue)
        self._queue.clear()
        self.queued_total -= dropped
        return dropped

    def on_frame(self, n: int, timestamp: int) -> OutgoingEvent | None:
        """The telephone-event packet for frame ``n`` (audio timestamp ``timestamp``), if any.

        ``None`` means the frame carries audio. Frame indices must increase; gaps are frames
        the clock skipped.
        """
        cur = self._playing
        if cur is None:
            if not self._queue or (self._next_start is not None and n < self._next_start):
                return None
            pending = self._queue.popleft()
            cur = _Playing(
                pending.digit,
                _EVENT_SYMBOLS.index(pending.digit),
                n,
                timestamp,
                pending.frames,
                pending.interval_frames,
            )
            self._playing = cur
            return self._packet(cur, (n - cur.start_frame + 1) * SAMPLES_PER_FRAME, False, True)
        elapsed = n - cur.start_frame + 1
        if elapsed < cur.frames and cur.ends_sent == 0:
            return self._packet(cur, elapsed * SAMPLES_PER_FRAME, False, False)
        cur.ends_sent += 1
        out = self._packet(cur, cur.frames * SAMPLES_PER_FRAME, True, False)
        if cur.ends_sent >= END_REPEATS:
            self._playing = None
            self.completed += 1
            self._next_start = max(n + 2, cur.start_frame + cur.frames + cur.interval_frames)
        return out

    def _packet(self, cur: _Playing, duration: int, end: bool, marker: bool) -> OutgoingEvent:
        payload = TelephoneEvent(cur.event, end, self._volume, duration).pack()
        return OutgoingEvent(payload, marker, cur.timestamp, cur.digit, end)


# -- receiver -----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Current:
    ssrc: int
    timestamp: int
    digit: str
    pressed_at: float
    duration: int
    last_arrival: float


class DtmfReceiver:
    """Turns telephone-event packets into completed key presses (see the module docstring)."""

    def __init__(self, *, timeout: float = END_TIMEOUT) -> None:
        self._timeout = timeout
        self._current: _Current | None = None
        self._finished: deque[tuple[int, int]] = deque(maxlen=_FINISHED_MEMORY)
        self.ignored = 0
        self.malformed = 0
        self.unsupported = 0
        self.lost_ends = 0

    def receive(
        self, payload: bytes, *, ssrc: int, timestamp: int, arrival: float, wall: float
    ) -> list[DtmfEvent]:
        """One telephone-event packet; returns the key presses it completes (0, 1 or 2).

        ``arrival`` is monotonic seconds (for the end timeout), ``wall`` epoch seconds.
        """
        try:
            ev = TelephoneEvent.parse(payload)
        except ValueError:
            self.malformed += 1
            return []
        key = (ssrc, timestamp)
        if key in self._finished:
            self.ignored += 1  # repeated end packet or late update of a finished event
            return []
        cur = self._current
        if cur is not None and (cur.ssrc, cur.timestamp) == key:
            cur.duration = max(cur.duration, ev.duration)
            cur.last_arrival = arrival
            return [self._finish(wall)] if ev.end else []
        digit = ev.digit
        if digit is None:
            self.unsupported += 1
            return []
        if cur is not None and cur.ssrc == ssrc and ts_diff(timestamp, cur.timestamp) < 0:
            self.ignored += 1  # a straggler from before the current event
            return []
        out: list[DtmfEvent] = []
        if cur is not None:
            out.append(self._lost_end())
        # Back-date the press when the packets before this one were lost.
        pressed = wall - max(0, ev.duration - SAMPLES_PER_FRAME) / SAMPLE_RATE
        self._current = _Current(ssrc, timestamp, digit, pressed, ev.duration, arrival)
        if ev.end:
            out.append(self._finish(wall))
        return out

    def next_deadline(self) -> float | None:
        """Monotonic time at which :meth:`poll` would end the current event."""
        cur = self._current
        return None if cur is None else cur.last_arrival + self._timeout

    def poll(self, now: float) -> list[DtmfEvent]:
        """End the current event if no packet came for ``timeout`` seconds (lost end)."""
        cur = self._current
        if cur is not None and now - cur.last_arrival >= self._timeout:
            return [self._lost_end()]
        return []

    def flush(self) -> list[DtmfEvent]:
        """End of stream: report an unfinished event."""
        return [self._lost_end()] if self._current is not None else []

    def _lost_end(self) -> DtmfEvent:
        cur = self._current
        assert cur is not None
        self.lost_ends += 1
        return self._finish(cur.pressed_at + cur.duration / SAMPLE_RATE)

    def _finish(self, released: float) -> DtmfEvent:
        cur = self._current
        assert cur is not None
        self._current = None
        self._finished.append((cur.ssrc, cur.timestamp))
        return DtmfEvent(cur.digit, cur.pressed_at, max(released, cur.pressed_at))

"""A file/loopback leg: a scripted caller for tests, demos and benchmarks.

It behaves like a real party without a network:

* plays a WAV file (or PCM16 bytes) as the caller's voice, frame by frame in real time on the
  injected clock, then silence;
* records everything the platform plays to it (in memory, and to a WAV file when asked);
* presses DTMF keys on a schedule (seconds after answer);
* can hang up by itself (``hangup_after`` seconds after answer), like a caller putting the
  phone down, or give up while still ringing (``abandon_after`` seconds after start); an
  outgoing file leg can answer after a delay (``answer_after``), like a callee picking up.

The leg owns its 20 ms clock (:class:`~callbridge.legs.pacer.Pacer`) from answer to end.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from callbridge.calls.model import HangupBy, HangupReason
from callbridge.legs.base import DtmfEvent, Leg, LegEnd, LegState, validate_dtmf
from callbridge.legs.pacer import Pacer
from callbridge.media.clock import Clock
from callbridge.media.constants import BYTES_PER_SECOND, FRAME_BYTES, FRAME_SECONDS, SILENCE_FRAME
from callbridge.media.wav import WavWriter, read_wav

#: Default cap of the in-memory recording (10 minutes); the WAV file has no cap.
DEFAULT_MEMORY_RECORD_SECONDS = 600.0


@dataclass(frozen=True, slots=True)
class ScheduledDigit:
    """A key the scripted party presses ``at`` seconds after answer, held ``duration_ms``."""

    at: float
    digit: str
    duration_ms: int = 100


@dataclass(frozen=True, slots=True)
class SentDigit:
    """A key the platform sent to this leg, with the wall time it started."""

    digit: str
    at: float
    duration_ms: int


class FileLeg(Leg):
    """A scripted party whose audio comes from a file and goes to a recording."""

    def __init__(
        self,
        leg_id: str,
        clock: Clock,
        *,
        outgoing: bool = False,
        play: bytes | Path | None = None,
        record_path: Path | None = None,
        dtmf: Sequence[ScheduledDigit] = (),
        hangup_after: float | None = None,
        answer_after: float | None = 0.0,
        abandon_after: float | None = None,
        memory_record_seconds: float = DEFAULT_MEMORY_RECORD_SECONDS,
    ) -> None:
        super().__init__(leg_id)
        self._clock = clock
        self.outgoing = outgoing
        if isinstance(play, Path):
            play = read_wav(play)
        self._play = play or b""
        if len(self._play) % 2:
            raise ValueError("PCM16 audio must have an even number of bytes")
        self._record_path = record_path
        self._writer: WavWriter | None = None
        self._dtmf = sorted(
            (ScheduledDigit(d.at, validate_dtmf(d.digit), d.duration_ms) for d in dtmf),
            key=lambda d: d.at,
        )
        for d in self._dtmf:
            if len(d.digit) != 1:
                raise ValueError("each scheduled DTMF entry presses exactly one key")
        self._hangup_after = hangup_after
        self._answer_after = answer_after
        self._abandon_after = abandon_after
        self._memory_cap = int(memory_record_seconds * BYTES_PER_SECOND)
        self.recorded = bytearray()
        self.sent_digits: list[SentDigit] = []
        self._pacer = Pacer(clock, self._on_tick, name=f"leg-{leg_id}")
        self._answer_wall = 0.0
        self._tasks: set[asyncio.Task[None]] = set()

    # -- Leg ----------------------------------------------------------------------------------
    async def start(self) -> None:
        if self.outgoing:
            self._set_state(LegState.DIALING)
            if self._answer_after is not None:
                self._spawn(self._remote_answer(self._answer_after))
        else:
            self._set_state(LegState.RINGING)
        if self._abandon_after is not None:
            self._spawn(self._abandon(self._abandon_after))

    async def answer(self) -> None:
        if self._state is LegState.ANSWERED:
            return
        if self.outgoing:
            raise RuntimeError("an outgoing leg is answered by the far end, not by us")
        self._begin_media()

    async def hangup(self, reason: HangupReason = HangupReason.NORMAL) -> None:
        await self._finish(LegEnd(reason, HangupBy.LOCAL))

    async def send_dtmf(
        self, digits: str, *, duration_ms: int = 100, interval_ms: int = 100
    ) -> None:
        for digit in validate_dtmf(digits):
            if self._state is LegState.ENDED:
                return
            self.sent_digits.append(SentDigit(digit, self._clock.time(), duration_ms))
            await self._clock.sleep((duration_ms + interval_ms) / 1000)

    # -- internals ----------------------------------------------------------------------------
    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _remote_answer(self, delay: float) -> None:
        if delay > 0:
            self._set_state(LegState.RINGING)
            await self._clock.sleep(delay)
        if self._state in (LegState.DIALING, LegState.RINGING):
            self._begin_media()

    async def _abandon(self, delay: float) -> None:
        await self._clock.sleep(delay)
        if self._state in (LegState.DIALING, LegState.RINGING):
            await self._finish(LegEnd(HangupReason.NORMAL, HangupBy.REMOTE))

    def _begin_media(self) -> None:
        if self._record_path is not None:
            self._writer = WavWriter(self._record_path)
        self._answer_wall = self._clock.time()
        self._set_state(LegState.ANSWERED)
        self._pacer.start()

    def _on_tick(self, n: int) -> None:
        if self._state is not LegState.ANSWERED:
            return
        start = n * FRAME_BYTES
        frame = self._play[start : start + FRAME_BYTES]
        if len(frame) < FRAME_BYTES:
            frame = frame + SILENCE_FRAME[len(frame) :] if frame else SILENCE_FRAME
        self._deliver_audio(frame)
        out = self._next_outbound()
        if len(self.recorded) < self._memory_cap:
            self.recorded += out
        if self._writer is not None:
            self._writer.write(out)
        elapsed = (n + 1) * FRAME_SECONDS
        while self._dtmf and self._dtmf[0].at + self._dtmf[0].duration_ms / 1000 <= elapsed:
            d = self._dtmf.pop(0)
            pressed = self._answer_wall + d.at
            self._deliver_dtmf(DtmfEvent(d.digit, pressed, pressed + d.duration_ms / 1000))
        if self._hangup_after is not None and elapsed >= self._hangup_after:
            self._hangup_after = None
            self._spawn(self._finish(LegEnd(HangupReason.NORMAL, HangupBy.REMOTE)))

    async def _finish(self, end: LegEnd) -> None:
        if self._state is LegState.ENDED:
            return
        await self._pacer.stop()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        for task in list(self._tasks):
            if task is not asyncio.current_task():
                task.cancel()
        self._set_state(LegState.ENDED, end)

    @property
    def recorded_seconds(self) -> float:
        return len(self.recorded) / BYTES_PER_SECOND

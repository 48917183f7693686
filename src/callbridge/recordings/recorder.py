"""One live recording: the caller (left) and the platform (right) into a 2-channel WAV.

Where the audio comes from (both on the leg's own 20 ms clock, so they stay aligned):

* **left — the caller**: a :class:`~callbridge.legs.graph.FrameConsumer` of the call's graph
  (bounded, drop-oldest like every consumer);
* **right — the platform**: an outbound tap on :meth:`MediaGraph.next_outbound_frame`, i.e.
  the mixed frame the leg plays to the caller (prompts, beeps, bridged handler audio).

The tap only appends the frame to a bounded deque and wakes the recorder task. The task pairs
each outbound frame with the inbound frame of the same tick (legs deliver both inside one
synchronous tick, so by the time the task runs both are queued; an outbound tick without an
inbound frame — an RTP leg before the far end's media flows — records silence on the left),
and hands one second of interleaved audio at a time to a worker thread, so disk writes never
run on the event loop.

Stop conditions: :meth:`CallRecorder.request_stop` (API, RTVBP, flow, hangup), the maximum
number of frames (``duration``), a DTMF key (``end_of_key``) and caller silence measured by
the energy VAD (``end_of_silence``). A failing write ends the recording with
:attr:`EndReason.ERROR`; it never raises into the call.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np
import structlog

from callbridge.legs.base import DtmfEvent
from callbridge.media.constants import FRAME_BYTES, FRAME_MS, SILENCE_FRAME
from callbridge.media.vad import EnergyVAD
from callbridge.media.wav import WavWriter
from callbridge.recordings.model import CHANNELS, EndReason

if TYPE_CHECKING:
    from callbridge.calls.service import LiveCall

log = structlog.get_logger("callbridge.recordings")

#: Frames collected before one write to disk (1 s; 32 KB of stereo audio).
FLUSH_FRAMES: Final = 50
#: Outbound frames queued while a write is in progress before the oldest are dropped (10 s).
MAX_QUEUED_FRAMES: Final = 500
#: Inbound frames queued without an outbound tick before they are written against silence.
MAX_INBOUND_LAG: Final = 5
#: Energy threshold of ``end_of_silence`` (dBFS): quieter caller frames count as silence.
SILENCE_THRESHOLD_DBFS: Final = -45.0
#: ``end_of_key`` values: one key, or ``any``.
END_KEYS: Final = frozenset("0123456789*#ABCD") | {"any"}


def open_writer(path: Path) -> WavWriter:
    """Create the directory and open a stereo WAV (runs in a worker thread)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return WavWriter(path, channels=CHANNELS)


def interleave(left: bytes, right: bytes) -> bytes:
    """Two equal-length mono PCM16 buffers as one interleaved stereo buffer."""
    lhs = np.frombuffer(left, dtype="<i2")
    rhs = np.frombuffer(right, dtype="<i2")
    out = np.empty(lhs.size * 2, dtype="<i2")
    out[0::2] = lhs
    out[1::2] = rhs
    return out.tobytes()


class CallRecorder:
    """Records one live call into ``writer`` until stopped or a limit is reached."""

    def __init__(
        self,
        live: LiveCall,
        writer: WavWriter,
        *,
        name: str,
        max_frames: int,
        end_of_key: str | None = None,
        end_of_silence_frames: int | None = None,
    ) -> None:
        if max_frames < 1:
            raise ValueError("a recording lasts at least one frame")
        if end_of_key is not None and end_of_key not in END_KEYS:
            raise ValueError(f"end_of_key must be one of 0-9 * # A-D or 'any', not {end_of_key!r}")
        self.live = live
        self.name = name
        self._writer = writer
        self._max_frames = max_frames
        self._end_key = end_of_key
        self._silence_limit = end_of_silence_frames
        self._vad = EnergyVAD(SILENCE_THRESHOLD_DBFS) if end_of_silence_frames else None
        self._silent_run = 0
        self._full = False
        self._out: deque[bytes] = deque()
        self._left = bytearray()
        self._right = bytearray()
        self._wake = asyncio.Event()
        self._consumer = live.graph.add_consumer(name, kind="recording", maxsize=MAX_QUEUED_FRAMES)
        self._remove_tap = live.graph.add_outbound_tap(self._on_outbound)
        self._remove_dtmf = live.graph.add_dtmf_listener(self._on_dtmf)
        self.frames = 0
        self.dropped_frames = 0
        self.stop_reason: EndReason = EndReason.NONE
        self.error: str | None = None
        self._task = asyncio.create_task(self._run(), name=f"recording-{name}")

    # -- what the leg's clock calls (synchronous, cheap) ---------------------------------------
    def _on_outbound(self, frame: bytes) -> None:
        if len(self._out) >= MAX_QUEUED_FRAMES:
            self._out.popleft()
            self.dropped_frames += 1
        self._out.append(frame)
        self._wake.set()

    def _on_dtmf(self, event: DtmfEvent) -> None:
        if self._end_key is not None and (self._end_key == "any" or event.digit == self._end_key):
            self.request_stop(EndReason.KEY)

    # -- control -------------------------------------------------------------------------------
    def request_stop(self, reason: EndReason) -> None:
        """Ask the recorder to end (the first reason wins); returns at once."""
        if self.stop_reason is EndReason.NONE:
            self.stop_reason = reason
        self._wake.set()

    async def wait(self) -> None:
        """Until the recording has ended and its file is closed."""
        await asyncio.shield(self._task)

    @property
    def done(self) -> bool:
        return self._task.done()

    @property
    def duration_ms(self) -> int:
        return self.frames * FRAME_MS

    # -- the recorder task ---------------------------------------------------------------------
    async def _run(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                self._collect()
                if self.stop_reason is not EndReason.NONE:
                    break
                if len(self._left) >= FLUSH_FRAMES * FRAME_BYTES:
                    await self._flush()
            self._detach()
            await self._flush()
        except OSError as exc:
            self.stop_reason = EndReason.ERROR
            self.error = f"cannot write {self._writer.path}: {exc.strerror or exc}"
            log.warning("recording failed", recording=self.name, error=self.error)
        finally:
            self._detach()
            try:
                await asyncio.to_thread(self._writer.close)
            except OSError as exc:
                if self.error is None:
                    self.stop_reason = EndReason.ERROR
                    self.error = f"cannot finish {self._writer.path}: {exc.strerror or exc}"

    def _collect(self) -> None:
        """Pair queued outbound frames with the caller's frames of the same ticks."""
        consumer = self._consumer
        while self._out and not self._full:
            right = self._out.popleft()
            left = consumer.get_nowait() or SILENCE_FRAME
            self._append(left, right)
        while consumer.queued > MAX_INBOUND_LAG and not self._full:
            left = consumer.get_nowait() or SILENCE_FRAME
            self._append(left, SILENCE_FRAME)

    def _append(self, left: bytes, right: bytes) -> None:
        self._left += left
        self._right += right
        self.frames += 1
        if self._vad is not None and self._silence_limit is not None:
            if self._vad.is_speech(left):
                self._silent_run = 0
            else:
                self._silent_run += 1
                if self._silent_run >= self._silence_limit:
                    self.request_stop(EndReason.SILENCE)
        if self.frames >= self._max_frames:
            self._full = True
            self.request_stop(EndReason.DURATION)

    async def _flush(self) -> None:
        if not self._left:
            return
        stereo = interleave(bytes(self._left), bytes(self._right))
        self._left.clear()
        self._right.clear()
        await asyncio.to_thread(self._writer.write, stereo)

    def _detach(self) -> None:
        self._remove_tap()
        self._remove_dtmf()
        self._consumer.close()

    async def cancel(self) -> None:
        """Stop at once (shutdown); the file is still closed properly."""
        self.request_stop(EndReason.SHUTDOWN)
        with contextlib.suppress(asyncio.CancelledError):
            await self.wait()

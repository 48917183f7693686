"""Adaptive jitter buffer for RTP-like audio input.

Packets arrive with network jitter, out of order, duplicated or not at all; the leg's clock
owner wants exactly one 20 ms frame per tick. :class:`JitterBuffer` bridges the two. It is a
pure object: the caller passes each packet's arrival time (``arrival``, seconds on any
monotonic base) and calls :meth:`JitterBuffer.pop` once per tick; the buffer reads no clock.

Timeline. Payloads are PCM16 at :data:`~callbridge.media.constants.SAMPLE_RATE` (the leg
decodes G.711 before pushing) and RTP timestamps count samples at that rate (RFC 3551 §4.5.14,
§4.5.15: G.711 and L16 use an 8 kHz clock for 8 kHz audio). The first packet of a stream
fixes a grid of 20 ms *slots*; every payload, whatever its ptime or alignment, is cut onto
that grid by its timestamp, so 10/30/60 ms packets come out as 20 ms frames ("re-cut").

Wrap-around. Sequence numbers (16 bits) and timestamps (32 bits) are *extended* as in
RFC 3550 §A.1: each new value is taken as the nearest one (forward or backward by less than
half the number space) to the highest value seen, so ``65535 → 0`` and ``2**32 - 160 → 0``
continue the stream instead of jumping.

Ordering and loss. Frames are played in timestamp order. A packet whose sequence number was
already seen (within the last ``_SEEN_WINDOW`` sequence numbers) is a *duplicate*; one whose
audio lies entirely before the playout point is *late*; both are counted and dropped. A slot
that is empty when its turn comes is *lost* if later audio is buffered (a hole), or an
*underrun* if the buffer ran dry. Either way the last
frame is repeated once at -6 dB (``"concealed"``), then silence follows (``"silence"``);
repeating longer turns a loss into an audible buzz. After an underrun the buffer *rebuffers*:
playback resumes when the target depth is buffered again, from the earliest buffered audio.

Adaptation. The interarrival jitter is estimated per RFC 3550 §6.4.1 (algorithm of §A.8):
``J += (|D(i-1, i)| - J) / 16`` where ``D`` is the difference of the relative transit times of
consecutive packets. The target depth follows ``JITTER_MULTIPLIER * J`` rounded up to whole
frames, clamped to ``[min_depth_ms, max_depth_ms]``. It grows at once (when the estimate
rises, and by one frame per late packet), and shrinks by one frame only after
``SHRINK_AFTER_FRAMES`` frames played without loss, lateness or underrun. When the buffered
depth exceeds twice the target the buffer skips quiet frames (below ``DROP_LEVEL_DBFS``) to
shed latency inaudibly; beyond ``max_depth_ms`` it skips ahead unconditionally.

Prefetch. Nothing is played until the target depth is buffered (initial silence). At the end
of a stream, :meth:`JitterBuffer.flush` hands out everything still buffered, so the tail of a
stream is never held back. A change of SSRC (RFC 3550 §8: a new source) resets the stream
state — grid, sequence/timestamp extension, jitter estimate, buffered audio — but keeps the
cumulative counters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Literal, NamedTuple

import numpy as np

from callbridge.media.constants import (
    BYTES_PER_SAMPLE,
    FRAME_MS,
    SAMPLE_RATE,
    SAMPLES_PER_FRAME,
    SILENCE_FRAME,
)

__all__ = ["JitterBuffer", "JitterKind", "JitterOutput", "JitterStats"]

JitterKind = Literal["audio", "concealed", "silence"]

_SEQ_MOD: Final = 1 << 16
_TS_MOD: Final = 1 << 32
_SSRC_MOD: Final = 1 << 32
#: RFC 3550 §A.8 smoothing: the estimate moves 1/16 of the way to each new sample.
_JITTER_GAIN: Final = 1.0 / 16.0
#: Target depth in multiples of the jitter estimate.
JITTER_MULTIPLIER: Final = 3.0
#: Frames played cleanly before the target may shrink by one frame (5 s).
SHRINK_AFTER_FRAMES: Final = 250
#: Frames below this level may be skipped to reduce an excessive depth.
DROP_LEVEL_DBFS: Final = -40.0
#: Consecutive late packets that mean the sender's timeline jumped back: resynchronise.
LATE_RESYNC_PACKETS: Final = 25
#: Sequence numbers remembered for duplicate detection.
_SEEN_WINDOW: Final = 512
#: A value no extended sequence number takes (they stay within ±2**47 of the first).
_NEVER_SEEN: Final = -(1 << 62)
_HALF_SEQ: Final = _SEQ_MOD // 2
#: Peak amplitude below which a frame counts as quiet (DROP_LEVEL_DBFS of full scale).
_QUIET_PEAK: Final = int(32768 * 10 ** (DROP_LEVEL_DBFS / 20))


class JitterOutput(NamedTuple):
    """One frame from :meth:`JitterBuffer.pop`: ``FRAME_BYTES`` of PCM16 and its origin."""

    pcm: bytes
    kind: JitterKind


@dataclass(frozen=True, slots=True)
class JitterStats:
    """Counters (cumulative across SSRC resets) and the current state of a jitter buffer."""

    received: int
    late: int
    duplicate: int
    lost: int
    concealed: int
    underruns: int
    discarded: int
    resets: int
    depth_ms: int
    target_ms: int
    jitter_ms: float


def _frames_for_ms(ms: int) -> int:
    return max(1, math.ceil(ms / FRAME_MS))


class JitterBuffer:
    """Reorders, de-duplicates, conceals and paces RTP-like PCM16 packets into 20 ms frames.

    Contract:

    * ``push(seq, timestamp, pcm, ssrc=, arrival=)``: ``seq`` in ``[0, 2**16)``, ``timestamp``
      and ``ssrc`` in ``[0, 2**32)``, ``pcm`` a whole number of PCM16 samples, ``arrival`` in
      seconds. Invalid input raises :class:`ValueError`.
    * ``pop()`` returns exactly one ``FRAME_BYTES`` frame per call with its kind.
    * ``flush()`` returns every buffered frame (holes as silence) and empties the buffer.
    """

    def __init__(self, *, min_depth_ms: int = 40, max_depth_ms: int = 200) -> None:
        if min_depth_ms < FRAME_MS:
            raise ValueError(f"min_depth_ms must be >= {FRAME_MS}, got {min_depth_ms}")
        if max_depth_ms < min_depth_ms:
            raise ValueError(
                f"max_depth_ms ({max_depth_ms}) must be >= min_depth_ms ({min_depth_ms})"
            )
        self._min_frames = _frames_for_ms(min_depth_ms)
        self._max_frames = _frames_for_ms(max_depth_ms)
        self._received = 0
        self._late = 0
        self._duplicate = 0
        self._lost = 0
        self._concealed = 0
        self._underruns = 0
        self._discarded = 0
        self._resets = 0
        self._ssrc: int | None = None
        self._reset_stream()

    def _reset_stream(self) -> None:
        self._slots: dict[int, bytes | bytearray] = {}
        self._max_slot = 0
        self._next: int | None = None  # next slot to play; None until playback first starts
        self._playing = False
        self._base_ts = 0
        self._max_ext_ts: int | None = None
        self._max_ext_seq: int | None = None
        # Ring of the extended sequence numbers seen, indexed by ``ext_seq % _SEEN_WINDOW``:
        # one list lookup per packet tells a duplicate (a set plus an eviction queue cost
        # three container operations).
        self._seen: list[int] = [_NEVER_SEEN] * _SEEN_WINDOW
        self._jitter = 0.0  # RFC 3550 J, in timestamp units
        self._last_transit: float | None = None
        self._set_target(self._min_frames)
        self._stable = 0
        self._consecutive_late = 0
        self._last_audio: bytes | None = None
        self._concealed_once = False

    # -- input ---------------------------------------------------------------------------

    def push(self, seq: int, timestamp: int, pcm: bytes, *, ssrc: int, arrival: float) -> None:
        """Accept one packet (see the class contract)."""
        # One test for the usual valid packet (negative numbers shift to non-zero too); the
        # precise message comes from _reject.
        if (seq >> 16) | (timestamp >> 32) | (ssrc >> 32) | (len(pcm) & 1):
            self._reject(seq, timestamp, ssrc, pcm)
        if ssrc != self._ssrc:
            if self._ssrc is not None:
                self._resets += 1
                self._discarded += len(self._slots)
                self._reset_stream()
            self._ssrc = ssrc
        self._received += 1

        # Sequence extension (RFC 3550 §A.1), inline: this runs for every packet.
        top = self._max_ext_seq
        if top is None:
            ext_seq = self._max_ext_seq = seq
        else:
            delta = (seq - top) % _SEQ_MOD
            if delta >= _HALF_SEQ:
                delta -= _SEQ_MOD
            ext_seq = top + delta
            if delta > 0:
                self._max_ext_seq = ext_seq
        seen = self._seen
        index = ext_seq % _SEEN_WINDOW
        if seen[index] == ext_seq:
            self._duplicate += 1
            return
        seen[index] = ext_seq
        ext_ts = self._extend_ts(timestamp)
        self._update_jitter(ext_ts, arrival)
        if not pcm:
            return  # nothing to play (e.g. a keep-alive); it still counted for jitter

        rel = ext_ts - self._base_ts
        samples = len(pcm) // BYTES_PER_SAMPLE
        first = rel // SAMPLES_PER_FRAME
        last = (rel + samples - 1) // SAMPLES_PER_FRAME
        floor = self._next
        if floor is not None and last < floor:
            self._late += 1
            self._consecutive_late += 1
            self._grow(self._target + 1)
            if self._consecutive_late >= LATE_RESYNC_PACKETS:
                # The sender's timeline moved back for good (a restart without a new SSRC):
                # start a new stream at this packet rather than dropping everything forever.
                self._resets += 1
                self._late -= 1  # this packet is not dropped after all: it starts the stream
                self._reset_stream()
                self.push(seq, timestamp, pcm, ssrc=ssrc, arrival=arrival)
                self._received -= 1  # counted once above
            return
        self._consecutive_late = 0
        was_empty = not self._slots
        if samples == SAMPLES_PER_FRAME and rel % SAMPLES_PER_FRAME == 0:
            self._slots[first] = pcm  # aligned 20 ms packet: the usual case, stored as is
        else:
            self._place(rel, pcm, first, last, floor)
        if was_empty or last > self._max_slot:
            self._max_slot = last

    @staticmethod
    def _reject(seq: int, timestamp: int, ssrc: int, pcm: bytes) -> None:
        if not 0 <= seq < _SEQ_MOD:
            raise ValueError(f"seq must be in [0, 65536), got {seq}")
        if not 0 <= timestamp < _TS_MOD:
            raise ValueError(f"timestamp must be in [0, 2**32), got {timestamp}")
        if not 0 <= ssrc < _SSRC_MOD:
            raise ValueError(f"ssrc must be in [0, 2**32), got {ssrc}")
        raise ValueError(f"payload must hold whole PCM16 samples, got {len(pcm)} bytes")

    def _place(self, rel: int, pcm: bytes, first: int, last: int, floor: int | None) -> None:
        """Cut a payload that is not exactly one aligned frame onto the slot grid."""
        slots = self._slots
        start = first if floor is None else max(first, floor)
        for slot in range(start, last + 1):
            slot_start = slot * SAMPLES_PER_FRAME
            lo = max(rel, slot_start)
            hi = min(rel + len(pcm) // BYTES_PER_SAMPLE, slot_start + SAMPLES_PER_FRAME)
            buf = slots.get(slot)
            if not isinstance(buf, bytearray):
                buf = bytearray(buf if buf is not None else SILENCE_FRAME)
                slots[slot] = buf
            dst = (lo - slot_start) * BYTES_PER_SAMPLE
            src = (lo - rel) * BYTES_PER_SAMPLE
            n = (hi - lo) * BYTES_PER_SAMPLE
            buf[dst : dst + n] = pcm[src : src + n]

    def _extend_ts(self, ts: int) -> int:
        top = self._max_ext_ts
        if top is None:
            self._max_ext_ts = ts
            self._base_ts = ts
            return ts
        delta = (ts - top) % _TS_MOD
        if delta >= _TS_MOD // 2:
            delta -= _TS_MOD
        ext = top + delta
        if ext > top:
            self._max_ext_ts = ext
        return ext

    def _update_jitter(self, ext_ts: int, arrival: float) -> None:
        # RFC 3550 §A.8: transit = arrival (in timestamp units) - RTP timestamp.
        transit = arrival * SAMPLE_RATE - ext_ts
        last = self._last_transit
        self._last_transit = transit
        if last is None:
            return
        jitter = self._jitter = self._jitter + (abs(transit - last) - self._jitter) * _JITTER_GAIN
        # Grow at once when the estimate asks for more depth (the common case asks for less:
        # one comparison, no call).
        if jitter > self._grow_above:
            self._grow(self._desired_frames())

    def _desired_frames(self) -> int:
        jitter_ms = self._jitter * 1000.0 / SAMPLE_RATE
        return _frames_for_ms(math.ceil(JITTER_MULTIPLIER * jitter_ms))

    def _grow(self, frames: int) -> None:
        frames = min(max(frames, self._min_frames), self._max_frames)
        if frames > self._target:
            self._set_target(frames)
            self._stable = 0

    def _set_target(self, frames: int) -> None:
        self._target = frames
        # The jitter (timestamp units) at or below which _desired_frames() <= frames:
        # JITTER_MULTIPLIER * J(ms) <= frames * FRAME_MS. A hair lower than exact, so float
        # rounding can only cause a needless _grow call, never a missed one.
        self._grow_above = (
            frames * FRAME_MS / JITTER_MULTIPLIER * SAMPLE_RATE / 1000.0 * (1.0 - 1e-9)
        )

    # -- output --------------------------------------------------------------------------

    def pop(self) -> JitterOutput:
        """Return the frame for this tick."""
        slots = self._slots
        if not self._playing:
            if not slots:
                return JitterOutput(SILENCE_FRAME, "silence")
            start = min(slots)
            if self._max_slot + 1 - start < self._target:
                return JitterOutput(SILENCE_FRAME, "silence")  # still (re)buffering
            self._playing = True
            self._next = start
        nxt = self._next
        assert nxt is not None
        if slots:
            nxt = self._shed_latency(nxt)
        frame = slots.pop(nxt, None)
        self._next = nxt + 1
        if frame is not None:
            pcm = frame if type(frame) is bytes else bytes(frame)
            self._last_audio = pcm
            self._concealed_once = False
            self._stable += 1
            if self._stable >= SHRINK_AFTER_FRAMES:
                self._stable = 0
                if self._desired_frames() < self._target and self._target > self._min_frames:
                    self._set_target(self._target - 1)
            return JitterOutput(pcm, "audio")
        self._stable = 0
        if slots:
            self._lost += 1  # a hole: later audio is buffered
        else:
            self._underruns += 1
            self._playing = False  # ran dry: rebuffer to the target depth
        if self._last_audio is not None and not self._concealed_once:
            self._concealed_once = True
            self._concealed += 1
            faded = np.frombuffer(self._last_audio, dtype="<i2") >> 1  # -6 dB
            return JitterOutput(faded.astype("<i2").tobytes(), "concealed")
        return JitterOutput(SILENCE_FRAME, "silence")

    def _shed_latency(self, nxt: int) -> int:
        """Skip frames when the buffer is much deeper than needed; return the slot to play."""
        slots = self._slots
        depth = self._max_slot + 1 - nxt
        if depth > self._max_frames:
            new = self._max_slot + 1 - self._target
            for slot in [s for s in slots if s < new]:
                del slots[slot]
            self._discarded += new - nxt
            return new
        if depth > 2 * self._target:
            frame = slots.get(nxt)
            if frame is not None and _is_quiet(frame):
                del slots[nxt]
                self._discarded += 1
                return nxt + 1
        return nxt

    def flush(self) -> list[bytes]:
        """End of stream: return all buffered frames in order (holes as silence) and empty."""
        slots = self._slots
        if not slots:
            return []
        start = min(slots) if self._next is None else min(self._next, min(slots))
        out: list[bytes] = []
        for slot in range(start, self._max_slot + 1):
            frame = slots.get(slot)
            out.append(SILENCE_FRAME if frame is None else bytes(frame))
        slots.clear()
        self._next = self._max_slot + 1
        self._playing = False
        self._last_audio = None
        return out

    # -- introspection -------------------------------------------------------------------

    @property
    def playing(self) -> bool:
        """False while prefetching or rebuffering."""
        return self._playing

    @property
    def target_ms(self) -> int:
        """Current target depth in milliseconds."""
        return self._target * FRAME_MS

    @property
    def depth_ms(self) -> int:
        """Audio buffered ahead of the playout point, in milliseconds."""
        if not self._slots:
            return 0
        start = min(self._slots) if not self._playing or self._next is None else self._next
        return (self._max_slot + 1 - start) * FRAME_MS

    @property
    def jitter_ms(self) -> float:
        """RFC 3550 interarrival jitter estimate in milliseconds."""
        return self._jitter * 1000.0 / SAMPLE_RATE

    @property
    def stats(self) -> JitterStats:
        """A snapshot of the counters and state."""
        return JitterStats(
            received=self._received,
            late=self._late,
            duplicate=self._duplicate,
            lost=self._lost,
            concealed=self._concealed,
            underruns=self._underruns,
            discarded=self._discarded,
            resets=self._resets,
            depth_ms=self.depth_ms,
            target_ms=self.target_ms,
            jitter_ms=self.jitter_ms,
        )


def _is_quiet(frame: bytes | bytearray) -> bool:
    samples = np.frombuffer(frame, dtype="<i2")
    return int(np.max(np.abs(samples.astype(np.int32)))) < _QUIET_PEAK

"""The outbound playout queue of one producer on a call leg.

A producer (TTS, a file player, a bridged WebSocket peer) pushes audio faster than real time;
the leg's clock owner pulls exactly one 20 ms frame per tick and sends it. :class:`PlayoutBuffer`
sits in between. It never reads a clock: time advances only when the owner calls
:meth:`PlayoutBuffer.tick`, so its behaviour is fully deterministic and testable in virtual time.

Marks. A *mark* is a named position in the queued audio (the "mark"/"clear" barge-in model of
media-streaming APIs): it is reported as ``played`` on the tick that emits the last byte queued
before it — never earlier, so a client acting on the mark (e.g. "prompt finished, start
listening") never cuts off audio still in flight — or as ``cleared`` when :meth:`clear` drops
the audio in front of it.

Data structure. Audio is kept as a deque of the caller's immutable ``bytes`` chunks plus a read
offset into the head chunk: ``enqueue`` is O(1) (no copy), ``tick`` copies at most one frame,
and nothing is ever shifted. Marks are stored against absolute byte positions of the stream
(``enqueued`` vs ``played`` counters), so firing them is a comparison per tick.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Final, Literal, NamedTuple

from callbridge.media.constants import (
    BYTES_PER_SAMPLE,
    BYTES_PER_SECOND,
    FRAME_BYTES,
    SILENCE_FRAME,
)
from callbridge.observability.metrics import PLAYOUT_UNDERRUNS

__all__ = [
    "DEFAULT_MAX_LEAD_SECONDS",
    "ClearResult",
    "Mark",
    "MarkStatus",
    "PlayoutBuffer",
    "PlayoutOverflow",
    "PlayoutTick",
]

#: Default bound on queued audio: how far a producer may run ahead of real time.
DEFAULT_MAX_LEAD_SECONDS: Final = 10.0

MarkStatus = Literal["played", "cleared"]


class PlayoutOverflow(Exception):
    """Raised by :meth:`PlayoutBuffer.enqueue` when the audio would exceed the lead limit.

    Nothing of the offending chunk was enqueued; the caller decides whether to wait, drop or
    disconnect the producer.
    """

    def __init__(self, queued_bytes: int, incoming_bytes: int, max_lead_bytes: int) -> None:
        self.queued_bytes = queued_bytes
        self.incoming_bytes = incoming_bytes
        self.max_lead_bytes = max_lead_bytes
        super().__init__(
            f"playout overflow: {incoming_bytes} bytes would bring the queue to "
            f"{(queued_bytes + incoming_bytes) / BYTES_PER_SECOND:.3f} s, above the limit of "
            f"{max_lead_bytes / BYTES_PER_SECOND:.3f} s ({queued_bytes} bytes already queued); "
            "nothing was enqueued"
        )


@dataclass(frozen=True, slots=True)
class Mark:
    """A mark that has been resolved: played out, or cleared before its audio played."""

    name: str
    status: MarkStatus


class PlayoutTick(NamedTuple):
    """What one :meth:`PlayoutBuffer.tick` produced.

    * ``pcm`` — exactly ``FRAME_BYTES`` bytes to send.
    * ``audio_bytes`` — bytes of real (queued) audio in ``pcm``; the rest is silence padding.
    * ``marks`` — marks whose preceding audio has now been fully played, in order.
    * ``underrun`` — the queue ran dry in the middle of this frame (padding was needed).
    """

    pcm: bytes
    audio_bytes: int
    marks: list[Mark]
    underrun: bool


@dataclass(frozen=True, slots=True)
class ClearResult:
    """What :meth:`PlayoutBuffer.clear` dropped."""

    dropped_bytes: int
    cleared_marks: list[Mark] = field(default_factory=list)


class PlayoutBuffer:
    """Queue of outbound audio for one producer, drained one frame per tick.

    Contract:

    * ``enqueue(pcm)`` accepts any length; an odd trailing byte is carried until the next
      enqueue completes the sample. If the queue would exceed ``max_lead_seconds`` it raises
      :class:`PlayoutOverflow` and enqueues nothing.
    * ``mark(name)`` places a mark at the current end of the queued audio.
    * ``tick()`` always returns exactly ``FRAME_BYTES`` bytes: queued audio, padded with silence
      when less than a frame is queued, or pure silence when the queue is empty.
    * ``clear()`` drops all unplayed audio (and a carried odd byte) and reports the pending marks
      as cleared.

    Not thread-safe: owned by one leg task.
    """

    __slots__ = (
        "_carry",
        "_chunks",
        "_enqueued",
        "_marks",
        "_max_lead_bytes",
        "_offset",
        "_played",
        "_queued",
        "_underrun_metric",
    )

    def __init__(
        self,
        max_lead_seconds: float = DEFAULT_MAX_LEAD_SECONDS,
        *,
        count_underruns: bool = True,
    ) -> None:
        if not max_lead_seconds > 0:  # also rejects NaN
            raise ValueError(f"max_lead_seconds must be positive, got {max_lead_seconds}")
        lead = int(max_lead_seconds * BYTES_PER_SECOND)
        self._max_lead_bytes = lead - lead % BYTES_PER_SAMPLE
        self._chunks: deque[bytes] = deque()
        self._offset = 0  # read position inside self._chunks[0]
        self._queued = 0  # unplayed audio bytes (whole samples only)
        self._carry = b""  # dangling odd byte awaiting its other half
        self._enqueued = 0  # absolute stream position of the end of queued audio
        self._played = 0  # absolute stream position of the end of played audio
        self._marks: deque[tuple[int, str]] = deque()  # (stream position, name), ascending
        self._underrun_metric = count_underruns

    # -- producer side -------------------------------------------------------------------

    def enqueue(self, pcm: bytes | bytearray | memoryview) -> None:
        """Queue ``pcm`` (any length) after the audio already queued."""
        data = bytes(pcm) if type(pcm) is not bytes else pcm
        if self._carry:
            data = self._carry + data
        n = len(data)
        whole = n - (n % BYTES_PER_SAMPLE)
        if self._queued + whole > self._max_lead_bytes:
            raise PlayoutOverflow(self._queued, whole, self._max_lead_bytes)
        if whole < n:
            self._carry = data[whole:]
            data = data[:whole]
        else:
            self._carry = b""
        if whole:
            self._chunks.append(data)
            self._queued += whole
            self._enqueued += whole

    def mark(self, name: str) -> None:
        """Place a mark named ``name`` at the current end of the queued audio."""
        self._marks.append((self._enqueued, name))

    # -- clock side ----------------------------------------------------------------------

    def tick(self) -> PlayoutTick:
        """Emit the next frame (see the class contract)."""
        queued = self._queued
        if queued >= FRAME_BYTES:
            head = self._chunks[0]
            if self._offset == 0 and len(head) == FRAME_BYTES:
                # A producer that queues whole frames (echo, a bridge): hand the chunk over.
                self._chunks.popleft()
                self._queued = queued - FRAME_BYTES
                pcm = head
            else:
                pcm = self._take(FRAME_BYTES)
            audio = FRAME_BYTES
            underrun = False
        elif queued:
            pcm = self._take(queued) + SILENCE_FRAME[queued:]
            audio = queued
            underrun = True
            if self._underrun_metric:
                PLAYOUT_UNDERRUNS.inc()
        else:
            pcm = SILENCE_FRAME
            audio = 0
            underrun = False
        played = self._played = self._played + audio
        marks: list[Mark] = []
        pending = self._marks
        while pending and pending[0][0] <= played:
            marks.append(Mark(pending.popleft()[1], "played"))
        return PlayoutTick(pcm, audio, marks, underrun)

    def _take(self, n: int) -> bytes:
        """Remove and return the next ``n`` queued bytes (``0 < n <= queued``)."""
        chunks = self._chunks
        head = chunks[0]
        off = self._offset
        end = off + n
        self._queued -= n
        if end < len(head):
            self._offset = end
            return head[off:end]
        if end == len(head):
            chunks.popleft()
            self._offset = 0
            return head if off == 0 else head[off:]
        # The frame spans several chunks: gather the pieces (at most one frame is copied).
        parts = [head[off:]]
        chunks.popleft()
        need = end - len(head)
        while need:
            head = chunks[0]
            if need < len(head):
                parts.append(head[:need])
                self._offset = need
                break
            parts.append(head)
            chunks.popleft()
            need -= len(head)
        else:
            self._offset = 0
        return b"".join(parts)

    def clear(self) -> ClearResult:
        """Drop all unplayed audio; report the exact bytes dropped and the marks cleared."""
        dropped = self._queued
        cleared = [Mark(name, "cleared") for _, name in self._marks]
        self._chunks.clear()
        self._marks.clear()
        self._offset = 0
        self._queued = 0
        self._carry = b""  # half a sample is not playable audio; not counted as dropped
        self._enqueued = self._played
        return ClearResult(dropped, cleared)

    # -- introspection -------------------------------------------------------------------

    @property
    def max_lead_bytes(self) -> int:
        """The lead limit in bytes."""
        return self._max_lead_bytes

    @property
    def queued_bytes(self) -> int:
        """Unplayed audio bytes (whole samples; excludes a carried odd byte)."""
        return self._queued

    @property
    def queued_seconds(self) -> float:
        """Unplayed audio duration in seconds."""
        return self._queued / BYTES_PER_SECOND

    @property
    def pending_marks(self) -> list[str]:
        """Names of marks not yet played, in order."""
        return [name for _, name in self._marks]

    @property
    def played_bytes_total(self) -> int:
        """Audio bytes emitted by :meth:`tick` since creation (padding not counted)."""
        return self._played

"""Cut an arbitrary byte stream into fixed-size PCM16 frames.

Transports deliver audio in whatever chunk sizes they like (WebSocket messages, TTS engines,
file readers, RTP packets with a non-20 ms ptime). :class:`FrameAssembler` turns such a stream
back into exact :data:`~callbridge.media.constants.FRAME_BYTES` frames, keeping the remainder
(including a dangling odd byte, i.e. half a sample) until more data arrives.

Complexity: every input byte is copied at most twice (into the pending buffer, then out into
its frame), and the pending buffer never holds more than one frame minus one byte between
calls, so a long stream costs O(n) overall — no quadratic re-slicing of a growing buffer.
"""

from __future__ import annotations

from callbridge.media.constants import BYTES_PER_SAMPLE, FRAME_BYTES

__all__ = ["FrameAssembler"]


class FrameAssembler:
    """Re-cut a byte stream into frames of ``frame_bytes`` bytes (default one 20 ms frame).

    Contract:

    * ``push(data)`` accepts any chunk (empty, odd-sized, many frames at once) and returns the
      frames completed by it, in order; concatenating every returned frame plus ``pending``
      bytes reproduces the input exactly.
    * ``flush(pad=True)`` returns the partial frame (padded with digital silence to a full
      frame when ``pad``; otherwise the raw remainder), or ``None`` when nothing is pending,
      and empties the assembler.
    * ``reset()`` discards pending bytes.

    Not thread-safe: one assembler per stream, used by its owning task.
    """

    __slots__ = ("_buf", "_frame_bytes")

    def __init__(self, frame_bytes: int = FRAME_BYTES) -> None:
        if frame_bytes <= 0 or frame_bytes % BYTES_PER_SAMPLE:
            raise ValueError(
                f"frame_bytes must be a positive multiple of {BYTES_PER_SAMPLE}, got {frame_bytes}"
            )
        self._frame_bytes = frame_bytes
        self._buf = bytearray()

    @property
    def frame_bytes(self) -> int:
        """Size of the frames produced."""
        return self._frame_bytes

    @property
    def pending(self) -> int:
        """Bytes received but not yet returned in a frame (always < ``frame_bytes``)."""
        return len(self._buf)

    def push(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Append ``data`` and return every frame it completes."""
        size = self._frame_bytes
        buf = self._buf
        n = len(data)
        if not buf:
            # Fast path: frame-aligned input (the usual case) is sliced straight out of the
            # caller's buffer without going through the pending buffer at all.
            if n == size and type(data) is bytes:
                return [data]
            view = memoryview(data).cast("B")
            whole = n - n % size
            frames = [bytes(view[i : i + size]) for i in range(0, whole, size)]
            if whole < n:
                buf += view[whole:]
            return frames
        buf += data
        total = len(buf)
        if total < size:
            return []
        whole = total - total % size
        with memoryview(buf) as view:
            frames = [bytes(view[i : i + size]) for i in range(0, whole, size)]
        # Deleting a prefix of a bytearray moves at most size-1 remaining bytes.
        del buf[:whole]
        return frames

    def flush(self, pad: bool = True) -> bytes | None:
        """Return the pending partial frame (silence-padded if ``pad``) and empty the buffer."""
        if not self._buf:
            return None
        out = bytes(self._buf)
        self._buf.clear()
        if pad:
            out += bytes(self._frame_bytes - len(out))
        return out

    def reset(self) -> None:
        """Discard pending bytes."""
        self._buf.clear()

"""The unit of audio on callbridge's media path: one 20 ms PCM16 frame.

An :class:`AudioFrame` is exactly :data:`~callbridge.media.constants.FRAME_BYTES` bytes of
signed 16-bit little-endian mono PCM at :data:`~callbridge.media.constants.SAMPLE_RATE`
(the ``L16/8000/1`` format of RFC 3551 §4.5.11, packetised at the G.711 default ptime of
RFC 3551 §4.5, 20 ms), tagged with ``index``: the frame number on the clock of the producer
that made it (frame ``n`` starts at ``n * FRAME_MS`` ms after that producer's origin).

Frames are created hundreds of times per second per call, so the class is a frozen, slotted
dataclass whose only work at construction is two cheap checks (a type check and a length
check). ``pcm`` is always an immutable :class:`bytes` object so a frame can be fanned out to
many consumers without copies and without any of them being able to change what the others
see.
"""

from __future__ import annotations

from dataclasses import dataclass

from callbridge.media.constants import FRAME_BYTES, FRAME_MS, SILENCE_FRAME

__all__ = ["AudioFrame", "silence"]


@dataclass(frozen=True, slots=True)
class AudioFrame:
    """One 20 ms frame of internal audio.

    Contract:

    * ``pcm`` is a :class:`bytes` object of exactly ``FRAME_BYTES`` bytes (``bytearray`` and
      ``memoryview`` are refused: they are mutable or tied to a buffer that may change).
    * ``index`` is a non-negative :class:`int` (``bool`` is refused).

    Violations raise :class:`TypeError` / :class:`ValueError` at construction, so a malformed
    frame is caught where it is made, not three stages later in an encoder.
    """

    pcm: bytes
    index: int

    def __post_init__(self) -> None:
        # ``type(...) is`` rather than isinstance: it is the cheapest check and subclasses of
        # bytes/int have no business on the hot path.
        if type(self.pcm) is not bytes:
            raise TypeError(f"AudioFrame.pcm must be bytes, not {type(self.pcm).__name__}")
        if len(self.pcm) != FRAME_BYTES:
            raise ValueError(
                f"AudioFrame.pcm must be exactly {FRAME_BYTES} bytes, got {len(self.pcm)}"
            )
        if type(self.index) is not int:
            raise TypeError(f"AudioFrame.index must be int, not {type(self.index).__name__}")
        if self.index < 0:
            raise ValueError(f"AudioFrame.index must be >= 0, got {self.index}")

    @property
    def start_ms(self) -> int:
        """Start of this frame on its producer's clock, in milliseconds."""
        return self.index * FRAME_MS

    @property
    def is_silence(self) -> bool:
        """True when every sample is digital zero (a 320-byte ``memcmp``, no decoding)."""
        return self.pcm == SILENCE_FRAME


def silence(index: int = 0) -> AudioFrame:
    """Return a frame of digital silence numbered ``index`` (shares one immutable buffer)."""
    return AudioFrame(SILENCE_FRAME, index)

"""Named constants of callbridge's internal audio format.

Every call leg carries telephone-band audio internally as signed 16-bit little-endian mono PCM
at 8 kHz, cut into 20 ms frames (the RTP packetisation time of RFC 3551 §4.5 for G.711, and the
RTVBP ``L16/8000/1`` frame of 320 bytes). Use these names, never the bare numbers.
"""

from __future__ import annotations

from typing import Final

#: Sample rate of the internal format, in Hz.
SAMPLE_RATE: Final = 8000
#: Duration of one frame, in milliseconds.
FRAME_MS: Final = 20
#: Duration of one frame, in seconds.
FRAME_SECONDS: Final = FRAME_MS / 1000
#: Bytes per PCM16 sample.
BYTES_PER_SAMPLE: Final = 2
#: Samples in one 20 ms frame at 8 kHz.
SAMPLES_PER_FRAME: Final = SAMPLE_RATE * FRAME_MS // 1000
#: Bytes in one 20 ms PCM16 frame.
FRAME_BYTES: Final = SAMPLES_PER_FRAME * BYTES_PER_SAMPLE
#: Frames per second.
FRAMES_PER_SECOND: Final = 1000 // FRAME_MS
#: PCM16 bytes per second of audio.
BYTES_PER_SECOND: Final = SAMPLE_RATE * BYTES_PER_SAMPLE
#: One frame of digital silence.
SILENCE_FRAME: Final = bytes(FRAME_BYTES)


def bytes_for_ms(ms: float) -> int:
    """Return the PCM16 byte count of ``ms`` milliseconds, rounded down to whole samples."""
    return int(SAMPLE_RATE * ms / 1000) * BYTES_PER_SAMPLE


def ms_for_bytes(n: int) -> float:
    """Return the duration in milliseconds of ``n`` bytes of PCM16 audio."""
    return n / BYTES_PER_SAMPLE * 1000 / SAMPLE_RATE

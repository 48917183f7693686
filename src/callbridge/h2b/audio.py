"""Session audio (h2b.md §2): codec decoding to PCM16 and the pre-roll ring.

Clients send raw binary chunks of any size: ``linear`` is signed 16-bit little-endian PCM (an
odd byte is carried to the next chunk), ``g711a``/``g711u`` are decoded sample by sample. All
at 8 kHz, the internal rate, so no resampling happens here.
"""

from __future__ import annotations

import enum
import sys
from collections import deque
from typing import Final

from callbridge.media.constants import BYTES_PER_SAMPLE, SAMPLE_RATE
from callbridge.media.g711 import alaw_decode, ulaw_decode

__all__ = [
    "MAX_CHUNK_BYTES",
    "PREROLL_MS",
    "AudioCodec",
    "AudioDecoder",
    "PrerollRing",
    "parse_codec",
    "samples_for_ms",
]

#: Largest accepted binary chunk (h2b.md §1).
MAX_CHUNK_BYTES: Final = 1024 * 1024
#: Audio kept before RECOGNIZE so an onset just before it is not lost (h2b.md §2).
PREROLL_MS: Final = 300
_SAMPLES_PER_MS: Final = SAMPLE_RATE // 1000


class AudioCodec(enum.StrEnum):
    """The three codecs of the OPEN ``audio_codec`` header."""

    LINEAR = "linear"
    G711A = "g711a"
    G711U = "g711u"


_CODEC_ALIASES: Final = {
    "linear": AudioCodec.LINEAR,
    "g711a": AudioCodec.G711A,
    "alaw": AudioCodec.G711A,
    "g711u": AudioCodec.G711U,
    "ulaw": AudioCodec.G711U,
    "mulaw": AudioCodec.G711U,
}


def parse_codec(value: object) -> AudioCodec | None:
    """The codec named by ``value`` (aliases accepted, any case), or ``None``."""
    if not isinstance(value, str):
        return None
    return _CODEC_ALIASES.get(value.strip().lower())


def samples_for_ms(ms: int) -> int:
    """Samples in ``ms`` milliseconds at 8 kHz."""
    return ms * _SAMPLES_PER_MS


class AudioDecoder:
    """Decodes chunks of one codec to PCM16 little-endian; stateful for ``linear``."""

    def __init__(self, codec: AudioCodec) -> None:
        self.codec = codec
        self._carry = b""

    def decode(self, chunk: bytes) -> bytes:
        """PCM16 for ``chunk`` (possibly empty when a single odd byte is carried)."""
        if self.codec is AudioCodec.G711A:
            return alaw_decode(chunk)
        if self.codec is AudioCodec.G711U:
            return ulaw_decode(chunk)
        data = self._carry + chunk if self._carry else chunk
        cut = len(data) - len(data) % BYTES_PER_SAMPLE
        self._carry = data[cut:]
        pcm = data[:cut]
        if sys.byteorder != "little":  # pragma: no cover - big-endian hosts
            import array

            samples = array.array("h", pcm)
            samples.byteswap()
            pcm = samples.tobytes()
        return bytes(pcm)


class PrerollRing:
    """The last :data:`PREROLL_MS` of PCM16 received outside a recognition."""

    def __init__(self, ms: int = PREROLL_MS) -> None:
        self._limit = samples_for_ms(ms) * BYTES_PER_SAMPLE
        self._chunks: deque[bytes] = deque()
        self._size = 0

    def push(self, pcm: bytes) -> None:
        """Append ``pcm`` and forget what is older than the ring's duration."""
        if len(pcm) >= self._limit:
            self._chunks.clear()
            self._chunks.append(pcm[len(pcm) - self._limit :])
            self._size = self._limit
            return
        self._chunks.append(pcm)
        self._size += len(pcm)
        while self._size > self._limit:
            head = self._chunks[0]
            excess = self._size - self._limit
            if len(head) <= excess:
                self._chunks.popleft()
                self._size -= len(head)
            else:
                self._chunks[0] = head[excess:]
                self._size -= excess

    def take(self) -> bytes:
        """The ring's content (oldest first); the ring is emptied."""
        data = b"".join(self._chunks)
        self._chunks.clear()
        self._size = 0
        return data

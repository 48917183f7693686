"""Audio helpers shared by the speech tests that run real engines."""

from __future__ import annotations

from callbridge.media.constants import FRAME_BYTES
from callbridge.media.g711 import ulaw_decode, ulaw_encode

#: 300 ms of silence before the speech (what a caller's line carries before they talk).
LEAD_BYTES = 4800


def telephone(pcm: bytes, *, tail_bytes: int = 8000) -> bytes:
    """``pcm`` as a caller's line carries it: lead-in silence, a G.711 µ-law round trip,
    ``tail_bytes`` of trailing silence, padded to whole 20 ms frames."""
    line = bytes(LEAD_BYTES) + ulaw_decode(ulaw_encode(pcm)) + bytes(tail_bytes)
    return line + bytes(-len(line) % FRAME_BYTES)

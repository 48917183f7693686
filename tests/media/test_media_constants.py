from __future__ import annotations

from callbridge.media import (
    BYTES_PER_SECOND,
    FRAME_BYTES,
    FRAME_MS,
    SILENCE_FRAME,
    bytes_for_ms,
    ms_for_bytes,
)


def test_frame_arithmetic() -> None:
    assert bytes_for_ms(FRAME_MS) == FRAME_BYTES
    assert bytes_for_ms(1000) == BYTES_PER_SECOND
    assert ms_for_bytes(FRAME_BYTES) == FRAME_MS
    assert ms_for_bytes(bytes_for_ms(250)) == 250
    assert len(SILENCE_FRAME) == FRAME_BYTES

"""G.711 µ-law and A-law companding (ITU-T Recommendation G.711, 11/1988).

G.711 maps linear PCM to 8-bit codes with a piecewise-linear approximation of a logarithmic
curve: 8 *segments* (chords) per polarity, each holding 16 equally spaced *quantisation
intervals*, where every segment doubles the step of the previous one.

* µ-law (G.711 §3, Table 2/G.711) works on a 14-bit magnitude range (±8159) with a bias of 33
  added before segmenting so the segment ends fall on powers of two; the transmitted code is
  the one's complement of ``sign | segment << 4 | interval``.
* A-law (G.711 §2, Table 1/G.711) works on a 13-bit range (±4095); segments 0 and 1 share the
  same step, and the even bits of the code are inverted (XOR ``0x55``) for transmission.

Scaling: callbridge uses the customary 16-bit scaling (the G.711 14-/13-bit values shifted
left by 2/3 bits), so the decoded extremes are µ-law ``0x80 → +32124``, ``0x00 → -32124``
and A-law ``0xAA → +32256``, ``0x2A → -32256``; the silence codes are µ-law ``0xFF → 0`` and
A-law ``0xD5 → +8`` (A-law has no zero level: its smallest reconstruction value is half a step).
Decoders output the *reconstruction* (mid-interval) value of Tables 1/2; encoders choose the
interval whose *decision* values bracket the input, truncating the 16-bit input to the 14/13
bits G.711 defines, exactly as the widely used reference implementation does.

Implementation: all 65536 possible PCM16 inputs and all 256 codes are tabulated once at
import (vectorised in numpy, < 5 ms), so encoding a frame is one table gather indexed by the
``uint16`` view of the samples. Decoding, the per-packet cost of every received RTP packet,
avoids numpy's per-call overhead: the 256-entry table is split into a low-byte and a
high-byte ``bytes.translate`` table, and the two translated strings are interleaved by
slice assignment into the little-endian output (about half the CPU of a numpy gather on a
160-byte payload). No Python loop runs per sample.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from callbridge.media.constants import BYTES_PER_SAMPLE

__all__ = [
    "ALAW_SILENCE",
    "ULAW_SILENCE",
    "alaw_decode",
    "alaw_encode",
    "ulaw_decode",
    "ulaw_encode",
]

#: µ-law code of a zero sample (positive zero: all bits set after inversion).
ULAW_SILENCE: Final = 0xFF
#: A-law code of the smallest positive level (+8 in 16-bit scaling), used as silence.
ALAW_SILENCE: Final = 0xD5

#: Number of segments per polarity (G.711 §2 and §3).
_SEGMENTS: Final = 8
#: Quantisation intervals per segment.
_INTERVALS: Final = 16
#: µ-law bias in the 14-bit domain (G.711 Table 2: decision values are offset by 33).
_ULAW_BIAS_14: Final = 33
#: Largest µ-law magnitude in the 14-bit domain; 8159 + 33 = 8192 = 2**13 ends segment 7.
_ULAW_CLIP_14: Final = 8159
#: Bits dropped to go from 16-bit samples to the µ-law 14-bit domain.
_ULAW_SHIFT: Final = 2
#: Bits dropped to go from 16-bit samples to the A-law 13-bit domain.
_ALAW_SHIFT: Final = 3
#: Even-bit inversion applied to A-law codes on the line (G.711 §2, Table 1 note).
_ALAW_XOR: Final = 0x55
#: Sign bit of an 8-bit G.711 code.
_SIGN_BIT: Final = 0x80


def _segment_of(magnitude: npt.NDArray[np.int64], first_end: int) -> npt.NDArray[np.int64]:
    """Segment number of each magnitude: the count of segment ends it exceeds.

    Segment ``s`` ends at ``first_end * 2**s - 1`` (µ-law: 63, 127, …, 8191 after the bias;
    A-law: 31, 63, …, 4095). Values beyond the last end yield ``_SEGMENTS``.
    """
    ends = first_end * (1 << np.arange(_SEGMENTS, dtype=np.int64)) - 1
    return np.searchsorted(ends, magnitude, side="left").astype(np.int64)


def _all_pcm16() -> npt.NDArray[np.int64]:
    """Every PCM16 value, ordered by its ``uint16`` bit pattern (0, 1, …, 32767, -32768, …, -1)."""
    return np.arange(1 << 16, dtype=np.uint16).view(np.int16).astype(np.int64)


def _build_ulaw_encode() -> npt.NDArray[np.uint8]:
    x14 = _all_pcm16() >> _ULAW_SHIFT  # arithmetic shift: floor, as the reference encoder does
    negative = x14 < 0
    magnitude = np.minimum(np.where(negative, -x14, x14), _ULAW_CLIP_14) + _ULAW_BIAS_14
    seg = _segment_of(magnitude, 64)
    interval = (magnitude >> (seg + 1)) & (_INTERVALS - 1)
    code = (np.minimum(seg, _SEGMENTS - 1) << 4) | interval
    # A magnitude that overflows segment 7 saturates to the top interval of segment 7.
    code = np.where(seg >= _SEGMENTS, 0x7F, code)
    # Before the inversion the sign bit is 1 for negative samples, so on the line positive
    # codes have the sign bit set (0x80..0xFF) and 0xFF is positive zero.
    code = np.where(negative, code | _SIGN_BIT, code)
    return (code ^ 0xFF).astype(np.uint8)  # µ-law transmits the one's complement


def _build_ulaw_decode() -> npt.NDArray[np.int16]:
    code = np.arange(256, dtype=np.int64) ^ 0xFF
    seg = (code >> 4) & (_SEGMENTS - 1)
    interval = code & (_INTERVALS - 1)
    # Reconstruction value (Table 2, 16-bit scaled): ((2*interval + 33) << seg) - 33, times 4.
    bias16 = _ULAW_BIAS_14 << _ULAW_SHIFT
    magnitude = (((interval << 3) + bias16) << seg) - bias16
    return np.where(code & _SIGN_BIT, -magnitude, magnitude).astype("<i2")


def _build_alaw_encode() -> npt.NDArray[np.uint8]:
    x13 = _all_pcm16() >> _ALAW_SHIFT
    negative = x13 < 0
    # One's complement for negatives: A-law is symmetric around -0.5 LSB (no zero level).
    magnitude = np.where(negative, -x13 - 1, x13)
    seg = _segment_of(magnitude, 32)
    # Segments 0 and 1 both have a step of 2 (13-bit units); segment s >= 1 has step 2**s.
    interval = (magnitude >> np.maximum(seg, 1)) & (_INTERVALS - 1)
    code = (np.minimum(seg, _SEGMENTS - 1) << 4) | interval
    code = np.where(seg >= _SEGMENTS, 0x7F, code)
    code = np.where(negative, code, code | _SIGN_BIT)
    return (code ^ _ALAW_XOR).astype(np.uint8)


def _build_alaw_decode() -> npt.NDArray[np.int16]:
    code = np.arange(256, dtype=np.int64) ^ _ALAW_XOR
    seg = (code >> 4) & (_SEGMENTS - 1)
    interval = code & (_INTERVALS - 1)
    # Reconstruction values (Table 1, 16-bit scaled): mid-interval of each step.
    step16 = 1 << (_ALAW_SHIFT + 1)  # step of segments 0/1 in 16-bit units (2 << 3)
    base = interval * step16 + step16 // 2  # segment 0: 8, 24, ..., 248
    upper = (interval * step16 + step16 // 2 + _INTERVALS * step16) << np.maximum(seg - 1, 0)
    magnitude = np.where(seg == 0, base, upper)
    return np.where(code & _SIGN_BIT, magnitude, -magnitude).astype("<i2")


_ULAW_ENC: Final = _build_ulaw_encode()
_ULAW_DEC: Final = _build_ulaw_decode()
_ALAW_ENC: Final = _build_alaw_encode()
_ALAW_DEC: Final = _build_alaw_decode()
for _t in (_ULAW_ENC, _ULAW_DEC, _ALAW_ENC, _ALAW_DEC):
    _t.setflags(write=False)  # shared, immutable lookup tables


def _byte_planes(table: npt.NDArray[np.int16]) -> tuple[bytes, bytes]:
    """``bytes.translate`` tables of the low and high bytes of a code → PCM16 table."""
    as_u16 = table.astype("<i2").view("<u2")
    return (as_u16 & 0xFF).astype(np.uint8).tobytes(), (as_u16 >> 8).astype(np.uint8).tobytes()


_ULAW_DEC_LO, _ULAW_DEC_HI = _byte_planes(_ULAW_DEC)
_ALAW_DEC_LO, _ALAW_DEC_HI = _byte_planes(_ALAW_DEC)


def _decode(data: bytes, low: bytes, high: bytes) -> bytes:
    out = bytearray(2 * len(data))
    out[0::2] = data.translate(low)  # little-endian: low byte first
    out[1::2] = data.translate(high)
    return bytes(out)


def _check_pcm(pcm: bytes) -> None:
    if len(pcm) % BYTES_PER_SAMPLE:
        raise ValueError(f"PCM16 input must hold whole samples, got {len(pcm)} bytes")


def ulaw_encode(pcm: bytes) -> bytes:
    """Encode PCM16 little-endian samples to µ-law, one byte per sample.

    Raises :class:`ValueError` if ``len(pcm)`` is odd.
    """
    _check_pcm(pcm)
    # ndarray.take: the same gather as fancy indexing with less per-call overhead (~35 %).
    codes: npt.NDArray[np.uint8] = _ULAW_ENC.take(np.frombuffer(pcm, dtype="<u2"))
    return codes.tobytes()


def ulaw_decode(data: bytes) -> bytes:
    """Decode µ-law bytes to PCM16 little-endian, two bytes per code."""
    return _decode(data, _ULAW_DEC_LO, _ULAW_DEC_HI)


def alaw_encode(pcm: bytes) -> bytes:
    """Encode PCM16 little-endian samples to A-law, one byte per sample.

    Raises :class:`ValueError` if ``len(pcm)`` is odd.
    """
    _check_pcm(pcm)
    codes: npt.NDArray[np.uint8] = _ALAW_ENC.take(np.frombuffer(pcm, dtype="<u2"))
    return codes.tobytes()


def alaw_decode(data: bytes) -> bytes:
    """Decode A-law bytes to PCM16 little-endian, two bytes per code."""
    return _decode(data, _ALAW_DEC_LO, _ALAW_DEC_HI)

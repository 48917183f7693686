from __future__ import annotations

import warnings
from types import ModuleType

import numpy as np
import pytest

from callbridge.media import (
    ALAW_SILENCE,
    ULAW_SILENCE,
    alaw_decode,
    alaw_encode,
    ulaw_decode,
    ulaw_encode,
)

ALL_CODES = bytes(range(256))
ALL_PCM = np.arange(1 << 16, dtype=np.uint16).view(np.int16).astype("<i2").tobytes()


def _audioop() -> ModuleType:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import audioop
        except ImportError:  # removed in Python 3.13
            pytest.skip("audioop is not available on this Python")
    return audioop


def _dec(fn: object, code: int) -> int:
    assert callable(fn)
    return int(np.frombuffer(fn(bytes([code])), dtype="<i2")[0])


# ITU-T G.711 Table 2 (µ-law) and Table 1 (A-law) reconstruction values, 16-bit scaling.
@pytest.mark.parametrize(
    ("code", "value"),
    [(0xFF, 0), (0x7F, 0), (0x80, 32124), (0x00, -32124), (0xFE, 8), (0x7E, -8), (0xEF, 132)],
)
def test_ulaw_reference_values(code: int, value: int) -> None:
    assert _dec(ulaw_decode, code) == value


@pytest.mark.parametrize(
    ("code", "value"),
    [(0xD5, 8), (0x55, -8), (0xAA, 32256), (0x2A, -32256), (0xD4, 24), (0xC5, 264)],
)
def test_alaw_reference_values(code: int, value: int) -> None:
    assert _dec(alaw_decode, code) == value


def test_silence_constants() -> None:
    assert ulaw_encode(bytes(2)) == bytes([ULAW_SILENCE])
    assert alaw_encode(bytes(2)) == bytes([ALAW_SILENCE])
    assert _dec(ulaw_decode, ULAW_SILENCE) == 0
    assert _dec(alaw_decode, ALAW_SILENCE) == 8


def test_extremes_saturate() -> None:
    extremes = np.array([32767, -32768], dtype="<i2").tobytes()
    assert ulaw_encode(extremes) == bytes([0x80, 0x00])
    assert alaw_encode(extremes) == bytes([0xAA, 0x2A])


@pytest.mark.parametrize(
    ("encode", "decode"), [(ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)]
)
def test_round_trip_all_codes(encode: object, decode: object) -> None:
    assert callable(encode) and callable(decode)
    decoded = decode(ALL_CODES)
    assert decode(encode(decoded)) == decoded
    # Every code except µ-law's negative zero (0x7F decodes like 0xFF) maps back to itself.
    back = encode(decoded)
    diffs = [c for c in range(256) if back[c] != c]
    assert diffs in ([], [0x7F])


@pytest.mark.parametrize(
    ("encode", "decode"), [(ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)]
)
def test_monotonic(encode: object, decode: object) -> None:
    assert callable(encode) and callable(decode)
    ramp = np.arange(-32768, 32768, dtype=np.int64).astype("<i2").tobytes()
    out = np.frombuffer(decode(encode(ramp)), dtype="<i2").astype(np.int64)
    assert np.all(np.diff(out) >= 0)
    assert out[0] < 0 < out[-1]


@pytest.mark.parametrize(
    ("encode", "decode", "max_rel"),
    [(ulaw_encode, ulaw_decode, 0.07), (alaw_encode, alaw_decode, 0.07)],
)
def test_quantisation_error_is_logarithmic(encode: object, decode: object, max_rel: float) -> None:
    assert callable(encode) and callable(decode)
    x = np.arange(1024, 32000, 7, dtype=np.int64)
    out = np.frombuffer(decode(encode(x.astype("<i2").tobytes())), dtype="<i2")
    rel = np.abs(out.astype(np.int64) - x) / x
    assert rel.max() < max_rel  # half a step of 1/16 of a segment, ~3.2 %, plus truncation


def test_odd_input_rejected() -> None:
    with pytest.raises(ValueError, match="whole samples"):
        ulaw_encode(b"\x00")
    with pytest.raises(ValueError, match="whole samples"):
        alaw_encode(b"\x00\x00\x00")


def test_empty() -> None:
    assert ulaw_encode(b"") == b""
    assert ulaw_decode(b"") == b""
    assert alaw_encode(b"") == b""
    assert alaw_decode(b"") == b""


def test_lengths() -> None:
    frame = bytes(320)
    assert len(ulaw_encode(frame)) == 160
    assert len(ulaw_decode(bytes(160))) == 320


def test_against_audioop_ulaw_all_inputs() -> None:
    audioop = _audioop()
    assert ulaw_encode(ALL_PCM) == audioop.lin2ulaw(ALL_PCM, 2)
    assert ulaw_decode(ALL_CODES) == audioop.ulaw2lin(ALL_CODES, 2)


def test_against_audioop_alaw_all_inputs() -> None:
    audioop = _audioop()
    assert alaw_encode(ALL_PCM) == audioop.lin2alaw(ALL_PCM, 2)
    assert alaw_decode(ALL_CODES) == audioop.alaw2lin(ALL_CODES, 2)

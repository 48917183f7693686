from __future__ import annotations

import io
import struct
import wave
from pathlib import Path

import numpy as np
import pytest

from callbridge.media import (
    SAMPLE_RATE,
    WavFormatError,
    alaw_encode,
    decode_wav,
    encode_wav,
    parse_wav,
    read_wav,
    tone,
    ulaw_encode,
    write_wav,
)
from callbridge.media.tones import ToneGenerator
from callbridge.media.wav import WAVE_FORMAT_EXTENSIBLE


def riff(
    tag: int,
    channels: int,
    rate: int,
    bits: int,
    data: bytes,
    extensible: bool = False,
    extra: bytes = b"",
) -> bytes:
    align = channels * bits // 8
    if extensible:
        fmt = struct.pack(
            "<HHIIHH", WAVE_FORMAT_EXTENSIBLE, channels, rate, rate * align, align, bits
        )
        fmt += struct.pack("<HHI", 22, bits, 0) + struct.pack("<H", tag) + bytes(14)
    else:
        fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits)
    body = b"WAVE" + extra + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _arr(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.int64)


def test_write_then_read_roundtrip(tmp_path: Path) -> None:
    pcm = tone(1000, 500)
    path = tmp_path / "beep.wav"
    write_wav(path, pcm)
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, SAMPLE_RATE)
    assert read_wav(path) == pcm
    assert read_wav(str(path)) == pcm
    with open(path, "rb") as fh:
        assert read_wav(fh) == pcm
    assert decode_wav(encode_wav(pcm)) == pcm


def test_write_odd_rejected() -> None:
    with pytest.raises(ValueError):
        write_wav(io.BytesIO(), b"\x00")


def test_stereo_16k_pcm_via_stdlib_writer() -> None:
    left = ToneGenerator(500.0, -12.0, sample_rate=16000).read(16000)
    stereo = np.stack([_arr(left), _arr(left)], axis=1).astype("<i2").tobytes()
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(stereo)
    info, _ = parse_wav(buf.getvalue())
    assert (info.channels, info.sample_rate, info.frames) == (2, 16000, 16000)
    assert info.duration_seconds == pytest.approx(1.0)
    out = decode_wav(buf.getvalue())
    assert abs(len(out) // 2 - SAMPLE_RATE) <= 1
    ref = _arr(tone(500, 1000, -12.0))
    got = _arr(out)
    n = min(len(ref), len(got))
    assert np.sqrt(np.mean((got[800 : n - 800] - ref[800 : n - 800]) ** 2)) < 100


@pytest.mark.parametrize(("tag", "encode"), [(7, ulaw_encode), (6, alaw_encode)])
def test_g711_files(tag: int, encode: object) -> None:
    assert callable(encode)
    pcm = tone(700, 200, -6)
    data = riff(tag, 1, SAMPLE_RATE, 8, encode(pcm))
    out = decode_wav(data)
    assert len(out) == len(pcm)
    assert np.max(np.abs(_arr(out) - _arr(pcm))) <= 520  # half the top segment's step + 8


def test_extensible_and_extra_chunks() -> None:
    pcm = tone(700, 100)
    data = riff(
        1,
        1,
        SAMPLE_RATE,
        16,
        pcm,
        extensible=True,
        extra=b"LIST" + struct.pack("<I", 3) + b"abc\x00",
    )
    assert decode_wav(data) == pcm


@pytest.mark.parametrize("bits", [8, 24, 32])
def test_other_pcm_widths(bits: int) -> None:
    x = _arr(tone(300, 100, -6))
    if bits == 8:
        raw = ((x >> 8) + 128).astype(np.uint8).tobytes()
    elif bits == 24:
        raw = b"".join(int(v << 8).to_bytes(3, "little", signed=True) for v in x)
    else:
        raw = (x << 16).astype("<i4").tobytes()
    out = _arr(decode_wav(riff(1, 1, SAMPLE_RATE, bits, raw)))
    tol = 256 if bits == 8 else 0
    assert np.max(np.abs(out - x)) <= tol


@pytest.mark.parametrize("bits", [32, 64])
def test_float(bits: int) -> None:
    x = np.array([0.0, 0.5, -0.5, 1.5, -2.0, np.nan], dtype="<f4" if bits == 32 else "<f8")
    out = _arr(decode_wav(riff(3, 1, SAMPLE_RATE, bits, x.tobytes())))
    assert list(out) == [0, 16384, -16384, 32767, -32767, 0]


def test_streamed_data_size_zero_and_partial_block() -> None:
    pcm = tone(400, 40)
    data = bytearray(riff(1, 1, SAMPLE_RATE, 16, pcm + b"\x01"))
    pos = data.index(b"data")
    data[pos + 4 : pos + 8] = struct.pack("<I", 0)
    assert decode_wav(bytes(data)) == pcm


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "shorter"),
        (b"RIFX" + bytes(8), "signature"),
        (b"RIFF" + bytes(4) + b"WAVE" + b"data" + struct.pack("<I", 2) + b"\x00\x00", "no fmt"),
        (b"RIFF" + bytes(4) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + bytes(4), "truncated"),
        (
            b"RIFF"
            + bytes(4)
            + b"WAVE"
            + b"fmt "
            + struct.pack("<I", 4)
            + bytes(4)
            + b"data"
            + bytes(4),
            "too short",
        ),
        (riff(1, 1, 8000, 16, b"")[:-8], "no data"),
        (riff(2, 1, 8000, 4, b""), "format tag"),
        (riff(1, 1, 8000, 12, b""), "12-bit"),
        (riff(7, 1, 8000, 16, b""), "16-bit"),
        (riff(1, 0, 8000, 16, b""), "channel"),
        (riff(1, 1, 12345, 16, b""), "sample rate"),
    ],
)
def test_corrupt_or_unsupported(data: bytes, message: str) -> None:
    with pytest.raises(WavFormatError, match=message):
        decode_wav(data)


def test_bad_block_align_and_short_extensible() -> None:
    data = bytearray(riff(1, 2, 8000, 16, bytes(8)))
    pos = data.index(b"fmt ") + 8 + 12
    data[pos : pos + 2] = struct.pack("<H", 3)
    with pytest.raises(WavFormatError, match="block align"):
        decode_wav(bytes(data))
    short = b"RIFF" + bytes(4) + b"WAVE" + b"fmt " + struct.pack("<I", 16)
    short += struct.pack("<HHIIHH", WAVE_FORMAT_EXTENSIBLE, 1, 8000, 16000, 2, 16)
    short += b"data" + struct.pack("<I", 2) + bytes(2)
    with pytest.raises(WavFormatError, match="extensible"):
        decode_wav(short)
    assert issubclass(WavFormatError, ValueError)


def test_wav_writer_streams_and_patches_the_header(tmp_path: Path) -> None:
    from callbridge.media.wav import WavWriter

    path = tmp_path / "rec.wav"
    writer = WavWriter(path)
    chunks = [bytes([i]) * 320 for i in range(10)]
    for chunk in chunks:
        writer.write(chunk)
    assert writer.bytes_written == 3200
    with pytest.raises(ValueError, match="whole samples"):
        writer.write(b"\x00")
    writer.close()
    writer.close()
    assert writer.closed
    assert read_wav(path) == b"".join(chunks)
    with pytest.raises(ValueError, match="closed"):
        writer.write(b"\x00\x00")

from __future__ import annotations

import random

import pytest

from callbridge.media import FRAME_BYTES, FrameAssembler


def _stream(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


@pytest.mark.parametrize("seed", range(20))
def test_random_chunks_reproduce_input(seed: int) -> None:
    rng = random.Random(seed)
    data = _stream(rng.randrange(0, 20 * FRAME_BYTES), seed)
    asm = FrameAssembler()
    frames: list[bytes] = []
    pos = 0
    while pos < len(data):
        size = rng.choice([0, 1, 3, 7, 159, 160, 319, 320, 321, 641, rng.randrange(0, 2000)])
        frames += asm.push(data[pos : pos + size])
        pos += size
        assert asm.pending == min(pos, len(data)) % FRAME_BYTES
    assert all(len(f) == FRAME_BYTES for f in frames)
    tail = asm.flush(pad=False)
    assert b"".join(frames) + (tail or b"") == data
    assert asm.pending == 0


def test_input_types() -> None:
    asm = FrameAssembler()
    data = _stream(FRAME_BYTES * 2 + 5, 1)
    out = asm.push(bytearray(data[:100]))
    out += asm.push(memoryview(data[100:]))
    assert out == [data[:FRAME_BYTES], data[FRAME_BYTES : 2 * FRAME_BYTES]]
    assert asm.pending == 5


def test_aligned_fast_path_returns_same_object() -> None:
    asm = FrameAssembler()
    frame = _stream(FRAME_BYTES, 2)
    (out,) = asm.push(frame)
    assert out is frame


def test_many_frames_at_once() -> None:
    asm = FrameAssembler()
    data = _stream(FRAME_BYTES * 50, 3)
    out = asm.push(data)
    assert len(out) == 50
    assert b"".join(out) == data


def test_flush_pads_with_silence() -> None:
    asm = FrameAssembler()
    assert asm.push(b"\x01\x02\x03") == []
    out = asm.flush()
    assert out == b"\x01\x02\x03" + bytes(FRAME_BYTES - 3)
    assert asm.flush() is None


def test_flush_without_pad() -> None:
    asm = FrameAssembler()
    asm.push(b"\x01" * 10)
    assert asm.flush(pad=False) == b"\x01" * 10


def test_empty_push() -> None:
    asm = FrameAssembler()
    assert asm.push(b"") == []
    assert asm.pending == 0
    asm.push(b"x")
    assert asm.push(b"") == []
    assert asm.pending == 1


def test_reset() -> None:
    asm = FrameAssembler()
    asm.push(b"abc")
    asm.reset()
    assert asm.pending == 0
    assert asm.flush() is None


def test_custom_frame_size() -> None:
    asm = FrameAssembler(4)
    assert asm.frame_bytes == 4
    assert asm.push(b"abcdefghij") == [b"abcd", b"efgh"]
    assert asm.pending == 2


@pytest.mark.parametrize("size", [0, -2, 3])
def test_bad_frame_size(size: int) -> None:
    with pytest.raises(ValueError, match="multiple"):
        FrameAssembler(size)


def test_linear_time_on_tiny_chunks() -> None:
    # One byte at a time through 2000 frames: quadratic buffering would be obvious here.
    asm = FrameAssembler()
    data = _stream(FRAME_BYTES * 2000, 4)
    out: list[bytes] = []
    for i in range(len(data)):
        out += asm.push(data[i : i + 1])
    assert b"".join(out) == data

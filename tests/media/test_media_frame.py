from __future__ import annotations

import dataclasses

import pytest

from callbridge.media import FRAME_BYTES, FRAME_MS, SILENCE_FRAME, AudioFrame, silence


def test_valid_frame() -> None:
    pcm = bytes(range(256)) + bytes(FRAME_BYTES - 256)
    f = AudioFrame(pcm, 7)
    assert f.pcm is pcm
    assert f.index == 7
    assert f.start_ms == 7 * FRAME_MS
    assert not f.is_silence


def test_frozen_and_slotted() -> None:
    f = silence(3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.index = 4  # type: ignore[misc]
    assert not hasattr(f, "__dict__")


def test_silence_helper() -> None:
    f = silence()
    assert f.pcm is SILENCE_FRAME
    assert f.index == 0
    assert f.is_silence
    assert silence(5).index == 5


@pytest.mark.parametrize("size", [0, 1, FRAME_BYTES - 1, FRAME_BYTES + 1, 2 * FRAME_BYTES])
def test_wrong_length(size: int) -> None:
    with pytest.raises(ValueError, match="exactly"):
        AudioFrame(bytes(size), 0)


@pytest.mark.parametrize("pcm", [bytearray(FRAME_BYTES), memoryview(bytes(FRAME_BYTES))])
def test_mutable_buffers_refused(pcm: object) -> None:
    with pytest.raises(TypeError):
        AudioFrame(pcm, 0)  # type: ignore[arg-type]


@pytest.mark.parametrize("index", [True, 1.0, "1"])
def test_index_type(index: object) -> None:
    with pytest.raises(TypeError):
        AudioFrame(SILENCE_FRAME, index)  # type: ignore[arg-type]


def test_negative_index() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        AudioFrame(SILENCE_FRAME, -1)


def test_equality_and_hash() -> None:
    assert silence(1) == AudioFrame(bytes(FRAME_BYTES), 1)
    assert hash(silence(1)) == hash(AudioFrame(bytes(FRAME_BYTES), 1))
    assert silence(1) != silence(2)

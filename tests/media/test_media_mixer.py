from __future__ import annotations

import numpy as np
import pytest

from callbridge.media import FRAME_BYTES, SAMPLES_PER_FRAME, SILENCE_FRAME, Mixer, mix


def _frame(values: list[int] | np.ndarray) -> bytes:
    arr = np.resize(np.asarray(values, dtype=np.int64), SAMPLES_PER_FRAME)
    return arr.astype("<i2").tobytes()


def _samples(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.int64)


def test_empty_is_silence() -> None:
    assert mix([]) is SILENCE_FRAME


def test_single_frame_is_returned_without_copy() -> None:
    f = _frame([1, 2, 3])
    assert mix([f]) is f


def test_sum() -> None:
    a = _frame([100, -200, 300])
    b = _frame([1, 2, 3])
    assert np.array_equal(_samples(mix([a, b])), np.resize([101, -198, 303], SAMPLES_PER_FRAME))


def test_saturation() -> None:
    a = _frame([30000, -30000, 20000])
    b = _frame([30000, -30000, -25000])
    out = _samples(mix([a, b, a]))
    assert list(out[:3]) == [32767, -32768, 15000]


def test_matches_reference_random() -> None:
    rng = np.random.default_rng(5)
    for n in range(2, 6):
        frames = [
            rng.integers(-32768, 32768, SAMPLES_PER_FRAME).astype("<i2").tobytes() for _ in range(n)
        ]
        ref = np.clip(sum(_samples(f) for f in frames), -32768, 32767)
        assert np.array_equal(_samples(mix(frames)), ref)
        assert np.array_equal(_samples(Mixer().mix(frames)), ref)


def test_silent_frames_skipped() -> None:
    a = _frame([5, 6])
    assert mix([SILENCE_FRAME, a, SILENCE_FRAME]) is a
    assert mix([SILENCE_FRAME, SILENCE_FRAME]) == SILENCE_FRAME


def test_other_lengths() -> None:
    a = np.array([1, 2], dtype="<i2").tobytes()
    assert mix([a, a]) == np.array([2, 4], dtype="<i2").tobytes()
    assert mix([bytes(4), bytes(4)]) == bytes(4)


def test_unequal_lengths() -> None:
    with pytest.raises(ValueError, match="different lengths"):
        mix([bytes(FRAME_BYTES), bytes(FRAME_BYTES - 2)])


def test_odd_lengths() -> None:
    with pytest.raises(ValueError, match="whole samples"):
        mix([bytes(3), bytes(3)])


def test_mixer_class() -> None:
    m = Mixer()
    assert m.frame_bytes == FRAME_BYTES
    a = _frame([1000])
    assert m.mix([]) == SILENCE_FRAME
    assert m.mix([a]) is a
    assert m.mix([SILENCE_FRAME, a]) is a
    assert _samples(m.mix([a, a]))[0] == 2000
    # The output does not alias the internal buffer.
    first = m.mix([a, a])
    m.mix([_frame([1]), _frame([1])])
    assert _samples(first)[0] == 2000
    with pytest.raises(ValueError, match="expected"):
        m.mix([a, bytes(10)])
    with pytest.raises(ValueError, match="even"):
        Mixer(3)

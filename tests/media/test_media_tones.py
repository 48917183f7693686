from __future__ import annotations

import math

import numpy as np
import pytest

from callbridge.media import (
    BEEP_DURATION_MS,
    BEEP_FREQ_HZ,
    SAMPLE_RATE,
    SAMPLES_PER_FRAME,
    ToneGenerator,
    beep,
    bytes_for_ms,
    frame_dbfs,
    tone,
)


def _dominant_hz(pcm: bytes, rate: int = SAMPLE_RATE) -> float:
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1 / rate)[int(np.argmax(spec))])


def test_length_and_frequency() -> None:
    pcm = tone(1000, 250)
    assert len(pcm) == bytes_for_ms(250)
    assert abs(_dominant_hz(pcm) - 1000) <= 4


def test_level() -> None:
    pcm = tone(1000, 1000, -10)
    peak = int(np.max(np.abs(np.frombuffer(pcm, dtype="<i2"))))
    assert abs(peak - 32767 * 10 ** (-10 / 20)) <= 2
    # A sine's RMS is 3 dB below its peak.
    assert frame_dbfs(pcm) == pytest.approx(-10 - 3.01, abs=0.05)


def test_beep() -> None:
    pcm = beep()
    assert len(pcm) == bytes_for_ms(BEEP_DURATION_MS)
    assert abs(_dominant_hz(pcm) - BEEP_FREQ_HZ) <= 4


def test_phase_continuity() -> None:
    gen = ToneGenerator(440.0, -6.0)
    chunks = [gen.read(SAMPLES_PER_FRAME) for _ in range(50)] + [gen.read(37), gen.read_ms(10)]
    whole = ToneGenerator(440.0, -6.0).read(SAMPLES_PER_FRAME * 50 + 37 + 80)
    a = np.frombuffer(b"".join(chunks), dtype="<i2").astype(int)
    b = np.frombuffer(whole, dtype="<i2").astype(int)
    assert np.max(np.abs(a - b)) <= 1
    # No jump at the frame edges bigger than the steepest slope of the sine.
    max_step = 32767 * 10 ** (-6 / 20) * 2 * math.pi * 440 / SAMPLE_RATE
    assert np.max(np.abs(np.diff(a))) <= max_step + 2
    assert gen.freq_hz == 440.0


def test_zero_duration() -> None:
    assert tone(1000, 0) == b""


@pytest.mark.parametrize(
    ("freq", "dbfs"), [(0, -10), (-5, -10), (4000, -10), (5000, -10), (1000, 1), (1000, math.nan)]
)
def test_invalid(freq: float, dbfs: float) -> None:
    with pytest.raises(ValueError):
        tone(freq, 100, dbfs)


def test_invalid_reads() -> None:
    gen = ToneGenerator(1000)
    with pytest.raises(ValueError):
        gen.read(-1)
    with pytest.raises(ValueError):
        gen.read_ms(-1)
    with pytest.raises(ValueError):
        ToneGenerator(1000, sample_rate=0)


def test_other_sample_rate() -> None:
    pcm = ToneGenerator(5000.0, sample_rate=16000).read(16000)
    assert abs(_dominant_hz(pcm, 16000) - 5000) <= 2

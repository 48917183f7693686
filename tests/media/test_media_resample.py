from __future__ import annotations

import random

import numpy as np
import pytest

from callbridge.media import QUALITIES, SAMPLE_RATE, SUPPORTED_RATES, Resampler, tone
from callbridge.media.tones import ToneGenerator

WIDE_RATES = [16000, 22050, 24000, 48000]


def _arr(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float64)


def _stream(r: Resampler, pcm: bytes, chunk_bytes: int) -> tuple[bytes, list[int]]:
    out = []
    sizes = []
    for i in range(0, len(pcm), chunk_bytes):
        o = r.process(pcm[i : i + chunk_bytes])
        out.append(o)
        sizes.append(len(o))
    out.append(r.flush())
    return b"".join(out), sizes


def _step(rate: int, seconds: float = 1.0, at: float = 0.5) -> bytes:
    x = np.zeros(int(rate * seconds), dtype="<i2")
    x[int(rate * at) :] = 10000
    return x.tobytes()


def _dominant_hz(x: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1 / rate)[int(np.argmax(spec))])


@pytest.mark.parametrize(("src", "dst"), [(8000, 16000), (16000, 8000)])
def test_qq_step_delay_is_small(src: int, dst: int) -> None:
    r = Resampler(src, dst)
    out, _ = _stream(r, _step(src), src // 50 * 2)
    y = _arr(out)
    crossing = int(np.argmax(y > 5000)) / dst
    assert abs(crossing - 0.5) * 1000 < 5.0  # measured: < 0.1 ms


@pytest.mark.parametrize(
    ("src", "dst"), [(8000, 16000), (16000, 8000), (8000, 48000), (48000, 8000)]
)
def test_qq_holds_back_almost_nothing(src: int, dst: int) -> None:
    r = Resampler(src, dst)
    chunk = src // 50  # 20 ms
    x = np.random.default_rng(0).normal(0, 3000, src).astype("<i2").tobytes()
    emitted = 0
    worst_ms = 0.0
    for i in range(0, len(x), chunk * 2):
        emitted += len(r.process(x[i : i + chunk * 2])) // 2
        ideal = (i // 2 + chunk) * dst / src
        worst_ms = max(worst_ms, (ideal - emitted) / dst * 1000)
    assert worst_ms < 5.0  # measured: <= 0.25 ms


@pytest.mark.parametrize(("src", "dst"), [(8000, 16000), (16000, 8000)])
def test_impulse_position_preserved(src: int, dst: int) -> None:
    x = np.zeros(src // 5, dtype="<i2")
    x[src // 10] = 20000
    r = Resampler(src, dst)
    out, _ = _stream(r, x.tobytes(), src // 50 * 2)
    y = np.abs(_arr(out))
    peak_s = int(np.argmax(y)) / dst
    assert abs(peak_s - 0.1) * 1000 < 5.0


def test_hq_holds_about_100ms_and_bursts() -> None:
    r = Resampler(8000, 16000, quality="HQ")
    sizes = [len(r.process(bytes(320))) for _ in range(20)]
    assert sizes[:4] == [0, 0, 0, 0]  # nothing in the first 80 ms
    assert sizes.count(0) > 10  # bursty afterwards
    q = Resampler(8000, 16000)
    assert all(len(q.process(bytes(320))) > 0 for _ in range(20))


@pytest.mark.parametrize("quality", ["QQ", "HQ"])
@pytest.mark.parametrize(
    ("src", "dst"), [(8000, r) for r in WIDE_RATES] + [(r, 8000) for r in WIDE_RATES]
)
def test_length_converges_to_ratio(src: int, dst: int, quality: str) -> None:
    n = src * 2 + 37  # not a whole number of frames
    x = np.random.default_rng(1).normal(0, 2000, n).astype("<i2").tobytes()
    out, _ = _stream(Resampler(src, dst, quality=quality), x, 333)  # odd chunk sizes
    assert abs(len(out) // 2 - n * dst / src) <= 1


@pytest.mark.parametrize(
    ("src", "dst"), [(8000, 16000), (16000, 8000), (8000, 48000), (22050, 8000)]
)
def test_chunked_equals_one_shot(src: int, dst: int) -> None:
    x = ToneGenerator(700.0, -6.0, sample_rate=src).read(src)
    one, _ = _stream(Resampler(src, dst), x, len(x))
    rng = random.Random(3)
    r = Resampler(src, dst)
    parts = []
    i = 0
    while i < len(x):
        n = rng.randrange(0, 900)
        parts.append(r.process(x[i : i + n]))
        i += n
    parts.append(r.flush())
    chunked = b"".join(parts)
    assert len(chunked) == len(one)
    assert np.max(np.abs(_arr(chunked) - _arr(one))) <= 2


@pytest.mark.parametrize(
    ("src", "dst"), [(8000, 16000), (16000, 8000), (8000, 24000), (48000, 8000)]
)
def test_tone_keeps_frequency_and_amplitude(src: int, dst: int) -> None:
    x = ToneGenerator(1000.0, -10.0, sample_rate=src).read(src)
    out, _ = _stream(Resampler(src, dst), x, src // 50 * 2)
    y = _arr(out)[dst // 10 : -dst // 10]
    assert abs(_dominant_hz(y, dst) - 1000) < 3
    peak_in = 32767 * 10 ** (-10 / 20)
    assert np.sqrt(np.mean(y**2)) == pytest.approx(peak_in / np.sqrt(2), rel=0.03)


def test_passthrough() -> None:
    r = Resampler(8000, 8000)
    assert r.passthrough
    pcm = tone(1000, 20)
    assert r.process(pcm) == pcm
    assert r.process(b"\x01") == b""
    assert r.process(b"\x02\x03") == b"\x01\x02"
    assert r.flush() == b""  # the dangling byte of a stream's end is discarded
    assert r.process(b"\x04\x05") == b"\x04\x05"


def test_odd_byte_carry() -> None:
    x = ToneGenerator(440.0, sample_rate=8000).read(800)
    a, _ = _stream(Resampler(8000, 16000), x, 2 * 800)
    b, _ = _stream(Resampler(8000, 16000), x, 7)
    assert np.max(np.abs(_arr(a) - _arr(b))) <= 2


def test_flush_allows_reuse_and_reset() -> None:
    r = Resampler(8000, 16000)
    x = tone(500, 100)
    first = r.process(x) + r.flush()
    second = r.process(x) + r.flush()
    assert first == second
    r.process(x)
    r.reset()
    assert r.process(x) + r.flush() == first
    r.process(b"\x01")
    r.reset()
    # The carried byte was forgotten: 319 bytes are 159 whole samples, giving 318 out.
    assert len(r.process(bytes(319)) + r.flush()) == 318 * 2
    pt = Resampler(16000, 16000)
    pt.process(b"\x09")
    pt.reset()
    assert pt.process(b"\x01\x02") == b"\x01\x02"


def test_properties() -> None:
    r = Resampler(8000, 48000, quality="MQ")
    assert (r.in_rate, r.out_rate, r.quality, r.passthrough) == (8000, 48000, "MQ", False)
    assert SAMPLE_RATE in SUPPORTED_RATES
    assert QUALITIES[0] == "QQ"


@pytest.mark.parametrize(
    ("src", "dst", "q"), [(8000, 12345, "QQ"), (7000, 8000, "QQ"), (8000, 16000, "XQ")]
)
def test_validation(src: int, dst: int, q: str) -> None:
    with pytest.raises(ValueError):
        Resampler(src, dst, quality=q)

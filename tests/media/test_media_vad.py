from __future__ import annotations

import math
import shutil
import subprocess

import numpy as np
import pytest

from callbridge.media import (
    FRAME_BYTES,
    FRAME_MS,
    SAMPLE_RATE,
    SILENCE_FRAME,
    EnergyVAD,
    Resampler,
    SpeechEvent,
    SpeechSegmenter,
    VoiceActivityDetector,
    WebRtcVAD,
    decode_wav,
    frame_dbfs,
)


def frames_of(pcm: bytes) -> list[bytes]:
    return [pcm[i : i + FRAME_BYTES] for i in range(0, len(pcm) - FRAME_BYTES + 1, FRAME_BYTES)]


def noise(seconds: float, rms: float, seed: int = 0) -> bytes:
    x = np.random.default_rng(seed).normal(0, rms, int(SAMPLE_RATE * seconds))
    return np.clip(x, -32768, 32767).astype("<i2").tobytes()


def speech_like(seconds: float, peak: float = 10000.0) -> bytes:
    """A voiced, speech-like signal: a gliding 120 Hz glottal pitch with formant-weighted
    harmonics (500/1500/2500 Hz) and a 4 Hz syllabic amplitude envelope."""
    t = np.arange(int(SAMPLE_RATE * seconds)) / SAMPLE_RATE
    f0 = 120 + 20 * np.sin(2 * np.pi * 3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    x = np.zeros_like(t)
    for h in range(1, 30):
        fh = h * f0
        weight = sum(np.exp(-(((fh - f) / 120) ** 2)) for f in (500, 1500, 2500)) + 0.05
        x += weight * np.sin(h * phase) / math.sqrt(h)
    x *= 0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)
    return (x / np.max(np.abs(x)) * peak).astype("<i2").tobytes()


def speech_ratio(vad: VoiceActivityDetector, pcm: bytes) -> float:
    fs = frames_of(pcm)
    return sum(vad.is_speech(f) for f in fs) / len(fs)


def test_frame_dbfs() -> None:
    assert frame_dbfs(SILENCE_FRAME) == -math.inf
    assert frame_dbfs(b"") == -math.inf
    full = np.full(160, -32768, dtype="<i2").tobytes()
    assert frame_dbfs(full) == pytest.approx(0.0)
    assert frame_dbfs(noise(1, 100)) == pytest.approx(20 * math.log10(100 / 32768), abs=0.2)
    with pytest.raises(ValueError):
        frame_dbfs(b"\x00")


def test_energy_vad() -> None:
    vad = EnergyVAD()
    assert vad.threshold_dbfs == -45.0
    assert isinstance(vad, VoiceActivityDetector)
    assert not vad.is_speech(SILENCE_FRAME)
    assert speech_ratio(vad, noise(1, 50)) == 0.0  # about -56 dBFS
    assert speech_ratio(vad, speech_like(1)) == 1.0
    vad.reset()
    with pytest.raises(ValueError):
        EnergyVAD(3.0)


@pytest.mark.parametrize("aggressiveness", [0, 1, 2, 3])
def test_webrtc_vad_generated_signals(aggressiveness: int) -> None:
    vad = WebRtcVAD(aggressiveness)
    assert vad.aggressiveness == aggressiveness
    assert isinstance(vad, VoiceActivityDetector)
    assert speech_ratio(vad, bytes(FRAME_BYTES * 50)) == 0.0
    assert speech_ratio(vad, noise(2, 100, seed=aggressiveness)) < 0.2
    vad.reset()
    assert speech_ratio(vad, speech_like(2)) > 0.9


def test_webrtc_vad_frame_sizes() -> None:
    vad = WebRtcVAD()
    for ms in (10, 20, 30):
        vad.is_speech(bytes(SAMPLE_RATE * ms // 1000 * 2))
    with pytest.raises(ValueError, match="10/20/30"):
        vad.is_speech(bytes(100))
    with pytest.raises(ValueError):
        WebRtcVAD(4)


def _segment(seg: SpeechSegmenter, pcm: bytes) -> list[SpeechEvent]:
    events = [seg.feed(f) for f in frames_of(pcm)]
    return [e for e in events if e is not None]


@pytest.mark.parametrize("vad", [EnergyVAD(), WebRtcVAD(2)], ids=["energy", "webrtc"])
def test_segmenter_silence_speech_silence(vad: VoiceActivityDetector) -> None:
    quiet = noise(1, 30, seed=5)  # 50 frames of low-level noise
    signal = quiet + speech_like(1) + quiet
    # The WebRTC detector calls the first few frames of a stream speech until its noise model
    # has adapted (measured: 4 frames of this noise); let it adapt on other noise first.
    for f in frames_of(noise(0.5, 30, seed=6)):
        vad.is_speech(f)
    seg = SpeechSegmenter(vad)
    events = _segment(seg, signal)
    assert [e.kind for e in events] == ["speech_started", "speech_ended"]
    start, end = events
    assert abs(start.frame_index - 50) <= 3
    # WebRTC's detector has its own short hangover (measured: 6 frames at mode 2).
    assert 97 <= end.frame_index <= 110
    assert start.time_ms == start.frame_index * FRAME_MS
    assert not seg.in_speech
    assert seg.frames_seen == 150


class Scripted:
    """A VAD that replays a fixed decision sequence."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.i = 0
        self.resets = 0

    def is_speech(self, frame: bytes) -> bool:
        c = self.pattern[self.i]
        self.i += 1
        return c == "S"

    def reset(self) -> None:
        self.resets += 1


def _run(pattern: str, start: int = 3, end: int = 15) -> list[tuple[str, int]]:
    seg = SpeechSegmenter(Scripted(pattern), start_frames=start, end_frames=end)
    out = [seg.feed(SILENCE_FRAME) for _ in pattern]
    return [(e.kind, e.frame_index) for e in out if e is not None]


def test_segmenter_hysteresis() -> None:
    # Clicks shorter than start_frames never start a segment.
    assert _run("..SS..S.SS....") == []
    # Start points back at the first frame of the qualifying run.
    assert _run("..SSS....", end=3) == [("speech_started", 2), ("speech_ended", 5)]
    # Pauses shorter than end_frames are bridged (hangover).
    assert _run("SSS..SS...SSS....", end=4) == [("speech_started", 0), ("speech_ended", 13)]


def test_segmenter_finish_and_reset() -> None:
    vad = Scripted("SSSSSS")
    seg = SpeechSegmenter(vad)
    for _ in range(4):
        seg.feed(SILENCE_FRAME)
    assert seg.in_speech
    assert seg.finish() == SpeechEvent("speech_ended", 4)
    assert seg.finish() is None
    seg.reset()
    assert vad.resets == 1
    assert seg.frames_seen == 0
    with pytest.raises(ValueError):
        SpeechSegmenter(vad, start_frames=0)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_webrtc_vad_real_synthesized_speech() -> None:  # pragma: no cover - needs espeak-ng
    wav = subprocess.run(
        ["espeak-ng", "--stdout", "Hello, this is a test of the voice activity detector."],
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout
    pcm = decode_wav(wav)
    assert len(pcm) > FRAME_BYTES * 25
    padded = bytes(FRAME_BYTES * 50) + pcm + bytes(FRAME_BYTES * 50)
    seg = SpeechSegmenter(WebRtcVAD(2))
    events = _segment(seg, padded)
    assert events and events[0].kind == "speech_started"
    assert events[0].frame_index >= 45
    assert events[-1].kind == "speech_ended"
    assert Resampler(22050, 8000).out_rate == SAMPLE_RATE

"""The free-transcription front end (decision 048): the talker's speech span found from frame
levels over a fluctuating background, the lead-in and tail silenced (the span untouched, the
length kept), steady backgrounds and clean lines left alone, and only free-transcription
jobs routed through it (grammar passes see the audio as it is, and the two never share a
cached encoder output)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from callbridge.speech.asr import whisper as whisper_module
from callbridge.speech.asr.frontend import (
    ABOVE_FLOOR_DB,
    DYNAMIC_RANGE_DB,
    PAD_MS,
    RAMP_MS,
    frame_levels,
    silence_outside_speech,
    speech_span,
)
from callbridge.speech.asr.whisper import WhisperJob, _WhisperModel

RATE = 16000


def _noise(seconds: float, level_db: float, rng: np.random.Generator) -> np.ndarray:
    """White noise at ``level_db`` (mean power, dB full scale)."""
    return (rng.standard_normal(int(seconds * RATE)) * 10 ** (level_db / 20)).astype(np.float32)


def _talk(seconds: float, level_db: float, rng: np.random.Generator) -> np.ndarray:
    """A 'talker': noise with a 4 Hz syllable envelope (dips 12 dB), at ``level_db``."""
    t = np.arange(int(seconds * RATE)) / RATE
    envelope = 0.25 + 0.75 * np.abs(np.sin(np.pi * 4 * t))
    x = rng.standard_normal(len(t)) * envelope
    return (x / np.sqrt(np.mean(x**2)) * 10 ** (level_db / 20)).astype(np.float32)


def _babble(seconds: float, level_db: float, rng: np.random.Generator) -> np.ndarray:
    """A fluctuating background (talkers, not white noise): noise whose level changes every
    40 ms, at most ``level_db`` and mostly a few dB under it (talkers' dips and pauses)."""
    n = int(seconds * RATE)
    blocks = 10 ** ((level_db - rng.exponential(2.5, n // 640 + 1)) / 20)
    return (rng.standard_normal(n) * np.repeat(blocks, 640)[:n]).astype(np.float32)


def _utterance(background_db: float, rng: np.random.Generator) -> np.ndarray:
    """0.5 s of babble, 1.5 s of talk at -20 dB over it, 0.8 s of babble."""
    audio = _babble(2.8, background_db, rng)
    audio[8000:32000] += _talk(1.5, -20.0, rng)
    return audio


def test_frame_levels_are_20_ms_every_10_ms_in_db() -> None:
    t = np.arange(RATE) / RATE
    sine = np.sin(2 * np.pi * 1000 * t).astype(np.float32)
    levels = frame_levels(sine, RATE)
    assert len(levels) == (RATE - 320) // 160 + 1
    assert np.allclose(levels, 10 * np.log10(0.5), atol=0.05)  # a full-scale sine: -3 dB
    assert np.allclose(frame_levels(sine * 0.1, RATE), 10 * np.log10(0.5) - 20, atol=0.05)
    assert len(frame_levels(sine[:100], RATE)) == 0


def test_span_is_the_talk_plus_the_padding_over_a_loud_background() -> None:
    rng = np.random.default_rng(1)
    audio = _utterance(-30.0, rng)  # background 10 dB under the talker
    span = speech_span(audio, RATE)
    assert span is not None
    pad = PAD_MS * RATE // 1000
    start, end = span
    # The talk's first syllable peaks within 60 ms, the last ends at its end.
    assert 8000 - pad - 320 <= start <= 8000 - pad + 1000, start
    assert 32000 + pad - 1600 <= end <= 32000 + pad + 320, end


def test_the_edges_are_silenced_the_span_untouched_and_the_length_kept() -> None:
    rng = np.random.default_rng(2)
    audio = _utterance(-30.0, rng)
    span = speech_span(audio, RATE)
    assert span is not None
    start, end = span
    out = silence_outside_speech(audio, RATE)
    ramp = RAMP_MS * RATE // 1000
    assert out.dtype == np.float32 and len(out) == len(audio)
    assert np.array_equal(out[start:end], audio[start:end])
    assert not np.any(out[: start - ramp]) and not np.any(out[end + ramp :])
    gain_in = out[start - ramp : start] / audio[start - ramp : start]
    gain_out = out[end : end + ramp] / audio[end : end + ramp]
    assert np.all(np.diff(gain_in) > 0) and np.all(np.diff(gain_out) < 0)
    assert gain_in.min() >= 0 and gain_in.max() < 1 and gain_out.max() < 1


def test_a_clean_line_keeps_speech_within_the_dynamic_range_and_no_more() -> None:
    """When the background is far below the talker the threshold is the loud frames minus
    DYNAMIC_RANGE_DB: a word 30 dB under the loudest is still speech and a click 50 dB under
    it (but far above the floor) is not."""
    rng = np.random.default_rng(3)
    audio = _babble(3.5, -100.0, rng)
    audio[8000:24000] += _talk(1.0, -15.0, rng)
    audio[24000:40000] += _talk(1.0, -15.0 - (DYNAMIC_RANGE_DB - 10), rng)
    audio[48000:50000] += _noise(0.125, -15.0 - (DYNAMIC_RANGE_DB + 10), rng)
    span = speech_span(audio, RATE)
    assert span is not None
    assert span[0] <= 8000
    assert 40000 - 1600 <= span[1] < 48000, span


def test_a_word_under_the_floor_threshold_is_cut_in_noise() -> None:
    """The other side of the rule: in noise, talk weaker than ABOVE_FLOOR_DB over the floor
    is background."""
    rng = np.random.default_rng(4)
    audio = _babble(3.0, -30.0, rng)
    audio[8000:24000] += _talk(1.0, -15.0, rng)
    audio[32000:40000] += _talk(0.5, -30.0 + ABOVE_FLOOR_DB - 14, rng)  # a faint 'tail'
    span = speech_span(audio, RATE)
    assert span is not None
    assert span[1] < 32000, span


def test_nothing_to_silence_returns_the_audio_itself() -> None:
    rng = np.random.default_rng(5)
    short = _noise(0.1, -20.0, rng)  # fewer frames than a floor needs
    assert silence_outside_speech(short, RATE) is short
    steady = _noise(2.0, -20.0, rng)  # no frame stands out of stationary noise
    assert speech_span(steady, RATE) is None
    assert silence_outside_speech(steady, RATE) is steady
    # A steady background is left alone even around a talker (it is not heard as words).
    white = _noise(2.8, -30.0, rng)
    white[8000:32000] += _talk(1.5, -20.0, rng)
    assert speech_span(white, RATE) is None
    assert silence_outside_speech(white, RATE) is white
    silent = np.zeros(RATE, np.float32)
    assert silence_outside_speech(silent, RATE) is silent
    all_talk = _talk(2.0, -20.0, rng)  # speech from the first frame to the last
    assert silence_outside_speech(all_talk, RATE) is all_talk


class _FakeModel:
    """Records what ``encode`` passes to the feature extractor; the encoder echoes a zero
    output (only the routing is under test here)."""

    def __init__(self) -> None:
        self.audio: list[np.ndarray] = []
        self.model = self

    def feature_extractor(self, audio: np.ndarray) -> np.ndarray:
        self.audio.append(audio)
        return np.zeros((80, len(audio) // 160 + 1), np.float32)

    def encode(self, features: Any, to_cpu: bool = False) -> Any:
        return np.zeros((1, 500, 384), np.float32)


def _pcm8k(audio16k: np.ndarray) -> bytes:
    pcm = np.clip(np.rint(audio16k[::2] * 32768), -32768, 32767).astype("<i2")
    return pcm.tobytes()


@pytest.mark.parametrize(
    ("hints", "silenced"),
    [
        ({}, True),
        ({"hotwords": "yes no"}, False),
        ({"prompt": "Yes."}, False),
        ({"vocabulary": ("yes", "no")}, False),
    ],
)
def test_only_free_transcription_jobs_are_silenced(hints: dict[str, Any], silenced: bool) -> None:
    fake = _FakeModel()
    model = _WhisperModel(fake)
    pcm = _pcm8k(_utterance(-30.0, np.random.default_rng(6)))
    model._encode(WhisperJob(pcm, True, **hints))
    (seen,) = fake.audio
    plain = whisper_module._to_float16k(pcm, 8000)
    assert len(seen) == len(plain)
    assert (not np.any(seen[:1000]) and not np.any(seen[-1000:])) is silenced
    if not silenced:
        assert np.array_equal(seen, plain)


def test_free_and_hinted_passes_never_share_a_cached_encoder_output() -> None:
    fake = _FakeModel()
    model = _WhisperModel(fake)
    pcm = _pcm8k(_utterance(-30.0, np.random.default_rng(7)))
    free = model._encode(WhisperJob(pcm, True))
    hinted = model._encode(WhisperJob(pcm, True, hotwords="yes no"))
    assert free is not hinted and model.encoder_passes == 2
    assert model._encode(WhisperJob(pcm, False)) is free  # an interim reuses the free one
    assert model._encode(WhisperJob(pcm, True, prompt="Yes.")) is hinted  # as it is
    assert model.encoder_passes == 2

"""Audio front end of free transcription: silence outside the talker's speech (decision 048).

An endpointed utterance carries the endpointer's pre-roll and hangover — a few hundred ms of
whatever the line holds before and after the talker. On a quiet line that is near-digital
silence; over background talkers (babble) ``tiny.en`` transcribes it: a beam search in
particular ends a noisy utterance with words nobody in front of the phone said ("… on my
statement for you tonight", "… all day, I went here"). Noise suppressors do not help there —
babble *is* speech, and the ones measured (WebRTC NS, RNNoise, spectral subtraction and
gating) made babble worse (decision 048) — but the talker is louder than the background:

* :func:`frame_levels`: the level (dB) of 20 ms frames every 10 ms;
* :func:`speech_span`: the noise floor is a low percentile of those levels (the lead-in and
  tail are part of every endpointed utterance). Only a *fluctuating* floor (talkers:
  :data:`FLUCTUATION_DB`) is acted on — white noise, hum and a clean line's codec noise are
  steady, ``tiny.en`` does not make words of them, and there the threshold would only cut
  soft final words. The talker's speech runs from the first to the last frame
  :data:`ABOVE_FLOOR_DB` above the floor (never less than :data:`DYNAMIC_RANGE_DB` below the
  loud frames, for a background far under the talker), widened by :data:`PAD_MS` on each
  side for the soft onsets and endings the threshold misses;
* :func:`silence_outside_speech`: the audio with everything outside that span faded to zero
  (10 ms ramps). Its length is unchanged, so segment timestamps and word timings keep the
  utterance's time base, and so does the encoder window (decision 041).

Only the *edges* are silenced: gaps inside the span are left alone (silencing pauses between
words was measured: no better, and it cuts soft words). Cost: one pass of numpy over the
utterance, well under a millisecond per second of audio.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np

__all__ = [
    "ABOVE_FLOOR_DB",
    "DYNAMIC_RANGE_DB",
    "FLOOR_PERCENTILE",
    "FLUCTUATION_DB",
    "PAD_MS",
    "frame_levels",
    "silence_outside_speech",
    "speech_span",
]

#: Level frames: 20 ms long, every 10 ms.
FRAME_MS: Final = 20
HOP_MS: Final = 10
#: The noise floor: this percentile of the frame levels (an endpointed utterance is at least
#: a tenth lead-in, tail and pauses).
FLOOR_PERCENTILE: Final = 10.0
#: Speech: frames this much above the floor (background talkers at 10 dB below the talker
#: peak 5-9 dB above their own floor; chosen on re-mixed noise, decision 048).
ABOVE_FLOOR_DB: Final = 8.0
#: The loud frames of the utterance (its speech level)...
SPEECH_PERCENTILE: Final = 95.0
#: ...and how far below them a frame still counts as speech when the floor is far lower
#: (a clean line): the threshold is never lower than this below the speech level.
DYNAMIC_RANGE_DB: Final = 40.0
#: Kept on each side of the speech span: soft onsets, final consonants and the fall of the
#: last word stay under the threshold.
PAD_MS: Final = 150
#: Fade into and out of the silenced edges (no click for the encoder).
RAMP_MS: Final = 10
#: Shorter audio is returned unchanged (too few frames for a floor).
MIN_FRAMES: Final = 20
#: A background is *fluctuating* (talkers) when its floor (:data:`FLOOR_PERCENTILE`) is this
#: far above the 2nd percentile of the frame levels; a steady one (white noise, hum, a clean
#: line's codec noise: 0.2-0.7 dB, against 2-9 dB for babble) is left alone — ``tiny.en``
#: does not turn it into words, and the threshold would cut soft final words in it.
FLUCTUATION_DB: Final = 1.5

_Audio = np.ndarray[Any, np.dtype[np.float32]]


def frame_levels(audio: _Audio, rate: int) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Mean power (dB, 0 dB = full-scale square wave) of :data:`FRAME_MS` frames every
    :data:`HOP_MS` of ``audio`` (float samples in [-1, 1]); empty when the audio is shorter
    than one frame."""
    n = FRAME_MS * rate // 1000
    hop = HOP_MS * rate // 1000
    if len(audio) < n or n <= 0 or hop <= 0:
        return np.zeros(0)
    frames = np.lib.stride_tricks.sliding_window_view(audio, n)[::hop]
    power = np.einsum("ij,ij->i", frames, frames, dtype=np.float64) / n
    return np.asarray(10.0 * np.log10(power + 1e-12))


def speech_span(audio: _Audio, rate: int, *, pad_ms: int = PAD_MS) -> tuple[int, int] | None:
    """Samples ``[start, end)`` of the talker's speech in ``audio`` plus ``pad_ms`` each side
    (clamped to the audio), or ``None`` — nothing is to be silenced — when the background is
    steady (:data:`FLUCTUATION_DB`), no frame stands out of the floor, or the audio is
    shorter than :data:`MIN_FRAMES` frames."""
    levels = frame_levels(audio, rate)
    if len(levels) < MIN_FRAMES:
        return None
    low, floor, level = np.percentile(levels, [2.0, FLOOR_PERCENTILE, SPEECH_PERCENTILE])
    if floor - low < FLUCTUATION_DB:
        return None
    threshold = max(floor + ABOVE_FLOOR_DB, level - DYNAMIC_RANGE_DB)
    active = np.flatnonzero(levels > threshold)
    if len(active) == 0:
        return None
    hop = HOP_MS * rate // 1000
    n = FRAME_MS * rate // 1000
    pad = pad_ms * rate // 1000
    start = max(0, int(active[0]) * hop - pad)
    end = min(len(audio), int(active[-1]) * hop + n + pad)
    return start, end


def silence_outside_speech(audio: _Audio, rate: int, *, pad_ms: int = PAD_MS) -> _Audio:
    """``audio`` with the lead-in before and the tail after :func:`speech_span` faded to
    zero over :data:`RAMP_MS` (outside the span: the span itself is untouched); the same
    length. Returned as is when there is nothing to silence."""
    span = speech_span(audio, rate, pad_ms=pad_ms)
    if span is None or span == (0, len(audio)):
        return audio
    start, end = span
    ramp = max(1, RAMP_MS * rate // 1000)
    gain = np.zeros(len(audio), np.float32)
    gain[start:end] = 1.0
    fade = np.linspace(0.0, 1.0, ramp + 1, dtype=np.float32)[:-1]
    lead = fade[-min(ramp, start) :] if start else fade[:0]
    gain[start - len(lead) : start] = lead
    tail = fade[::-1][: min(ramp, len(audio) - end)]
    gain[end : end + len(tail)] = tail
    return np.asarray(audio * gain, dtype=np.float32)

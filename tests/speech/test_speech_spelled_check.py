"""PocketSphinx re-check of the symbols Whisper confuses in spelled codes (decision 047)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from callbridge.speech.asr.auto import AutoRecognizer
from callbridge.speech.asr.base import DecodeResult
from callbridge.speech.asr.spelled import LETTER_A, choose_code, confusion_jsgf
from callbridge.speech.asr.sphinx import SphinxJob, SphinxRecognizer
from callbridge.speech.asr.whisper import WhisperRecognizer
from callbridge.speech.asr.workers import EngineJobError
from callbridge.speech.grammars import load_grammar

MIXED = load_grammar("builtin:speech/spelling/mixed")
READING = DecodeResult("J, W, A, nine, six.", 0.8)


def test_confusion_jsgf_lets_only_confusable_symbols_vary() -> None:
    search = confusion_jsgf("jwa960")
    assert search is not None
    main = next(line for line in search.splitlines() if line.startswith("public <main>"))
    # A and eight are alternatives, the letter A only as its name ("a." in CMUdict).
    assert f"j w ( {LETTER_A} | eight ) nine six ( zero | oh )" in main
    assert "<carrier>*" in main and "<carrier> = my | code" in search
    # One-way: Whisper's "eight"s are right, only its "A"s are checked.
    assert confusion_jsgf("j8") is None
    assert confusion_jsgf("mk44") is None  # nothing to choose
    assert confusion_jsgf("") is None
    assert confusion_jsgf("ab-1") is None  # not a code PocketSphinx can spell


def test_choose_code_takes_the_symbol_pocketsphinx_heard() -> None:
    checked = choose_code(MIXED, READING, "jwa96", "my code is j w eight nine six")
    assert checked.transcript == "J, W, eight, nine, six."
    assert MIXED.interpret(checked.transcript).value == "jw896"
    assert [a.transcript for a in checked.nbest] == [checked.transcript, READING.transcript]
    assert checked.confidence == pytest.approx(0.72)
    # One-way: an "eight" of Whisper's reading stays, even if PocketSphinx heard "a.".
    reading = DecodeResult("B, eight, A.", 1.0)
    checked = choose_code(MIXED, reading, "b8a", f"b {LETTER_A} eight")
    assert checked.transcript == "B, eight, eight."


def test_choose_code_changes_nothing_else() -> None:
    # Only symbols of a confusable group may change: a different "j" is ignored.
    checked = choose_code(MIXED, READING, "jwa96", "k w eight nine six")
    assert MIXED.interpret(checked.transcript).value == "jw896"
    # Same answer, a different number of symbols, a word that is no symbol: the reading.
    assert choose_code(MIXED, READING, "jwa96", f"j w {LETTER_A} nine six") is READING
    assert choose_code(MIXED, READING, "jwa96", "j w eight nine") is READING
    assert choose_code(MIXED, READING, "jwa96", "j w eight nine sticks") is READING
    assert choose_code(MIXED, READING, "jwa96", "") is READING
    # The grammar must accept the new code in full (here its regex wants letters only).
    letters = load_grammar("builtin:speech/spelling/mixed?regex=[a-z]+")
    reading = DecodeResult("A, B.", 1.0)
    assert choose_code(letters, reading, "ab", "eight b") is reading


class _FakePool:
    """Stands in for the PocketSphinx worker pool: answers every job with ``heard``."""

    def __init__(self, heard: str | Exception) -> None:
        self.heard = heard
        self.jobs: list[SphinxJob] = []

    async def start(self) -> None:
        pass

    async def submit(self, job: SphinxJob) -> DecodeResult:
        self.jobs.append(job)
        if isinstance(self.heard, Exception):
            raise self.heard
        return DecodeResult(self.heard, 1.0)


def _recognizer(heard: str | Exception, **kwargs: Any) -> tuple[SphinxRecognizer, _FakePool]:
    recognizer = SphinxRecognizer(**kwargs)
    pool = _FakePool(heard)
    recognizer._pool = pool  # type: ignore[assignment]
    return recognizer, pool


async def test_check_code_runs_the_confusion_network_search() -> None:
    recognizer, pool = _recognizer("j w eight nine six")
    checked = await recognizer._check_code(b"\0" * 1600, MIXED, READING, "en-US", 8000)
    assert MIXED.interpret(checked.transcript).value == "jw896"
    [job] = pool.jobs
    assert job.mode == "jsgf" and job.grammar == confusion_jsgf("jwa96")
    assert (recognizer.code_checks, recognizer.code_changes) == (1, 1)


class _FakeWhisper:
    """Stands in for the Whisper verifier: every grammar reading is ``READING``."""

    async def transcribe_for(self, pcm: bytes, grammar: object, **kwargs: Any) -> DecodeResult:
        return READING


async def test_recognize_checks_whisper_readings_of_spelled_codes() -> None:
    recognizer, pool = _recognizer("j w eight nine six")
    recognizer.verifier = _FakeWhisper()  # type: ignore[assignment]
    result = await recognizer.recognize(b"\0" * 1600, MIXED)
    assert MIXED.interpret(result.transcript).value == "jw896"
    assert len(pool.jobs) == 1


async def test_check_code_leaves_readings_it_cannot_check() -> None:
    recognizer, pool = _recognizer("m k four four")
    plain = DecodeResult("M, K, four, four.", 1.0)
    assert await recognizer._check_code(b"", MIXED, plain, "en-US", 8000) is plain
    rejected = DecodeResult("A.", 0.0, rejected=True)
    assert await recognizer._check_code(b"", MIXED, rejected, "en-US", 8000) is rejected
    sentence = DecodeResult("The weather is nice today.", 1.0)
    assert await recognizer._check_code(b"", MIXED, sentence, "en-US", 8000) is sentence
    assert pool.jobs == []
    off, off_pool = _recognizer("j w eight nine six", check_codes=False)
    assert await off._check_code(b"", MIXED, READING, "en-US", 8000) is READING
    assert off_pool.jobs == []
    failing, _ = _recognizer(EngineJobError("unknown word"))
    assert await failing._check_code(b"", MIXED, READING, "en-US", 8000) is READING
    assert failing.code_changes == 0


def test_auto_routes_spelled_codes_through_the_check() -> None:
    spelled = load_grammar("builtin:speech/spelling/mixed")
    digits = load_grammar("builtin:speech/spelling/digits")
    whisper = WhisperRecognizer("/nonexistent/model")
    auto = AutoRecognizer(whisper=whisper)
    assert auto.codes is not None and auto.codes.verifier is whisper and auto.sphinx is None
    assert auto._engine_for(spelled, "en-US") is auto.codes
    assert auto._engine_for(digits, "en-US") is whisper
    assert AutoRecognizer(whisper=whisper, check_codes=False)._engine_for(spelled, "en-US") is (
        whisper
    )
    fused = AutoRecognizer(whisper=whisper, fused=True)
    assert fused.codes is fused.sphinx


def test_pocketsphinx_compiles_the_confusion_network() -> None:
    pytest.importorskip("pocketsphinx", reason="speech extra not installed (pocketsphinx)")
    from callbridge.speech.asr.sphinx import SphinxModelFactory

    model = SphinxModelFactory()()
    search = confusion_jsgf("jwa96")
    assert search is not None
    noise = np.random.default_rng(7).normal(0, 300, 8000).astype("<i2").tobytes()
    result = model.run(SphinxJob(noise, "jsgf", grammar=search))
    assert math.isfinite(result.confidence)  # the grammar (with the word "a.") compiled

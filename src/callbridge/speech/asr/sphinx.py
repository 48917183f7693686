"""Grammar-constrained recognition with PocketSphinx, plus a rejection layer.

PocketSphinx (BSD) decodes against a JSGF grammar built from the callbridge grammar
(:meth:`~callbridge.speech.grammars.base.Grammar.constraint`), in keyphrase-spotting mode, or
against its free trigram LM. It holds the GIL, so it runs in worker **processes**; each
process loads the en-US acoustic model once (about 28 MB with a grammar) and caches compiled
grammars by their text. The en-US model is 16 kHz: utterances are upsampled from 8 kHz.

A JSGF search always forces *some* in-grammar answer, even for out-of-grammar speech (the
measurement behind issue 3). Two rejection layers turn that into a no-match:

1. ``min_confidence``: the posterior probability of the best path must reach a threshold;
2. a Whisper cross-check (``verifier``): the same utterance is transcribed freely by Whisper
   in parallel and interpreted with the grammar; if that transcript does not match the
   grammar the result is rejected, and when both match with different values the Whisper
   reading wins (it is the more accurate engine by an order of magnitude on our corpus).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import tempfile
import warnings
from dataclasses import dataclass
from typing import Any, Final, Literal

from callbridge.media.resample import Resampler
from callbridge.speech import EngineUnavailable
from callbridge.speech.asr.base import (
    Alternative,
    DecodeResult,
    RecognitionSession,
    Recognizer,
    SessionOptions,
    Word,
)
from callbridge.speech.asr.session import SegmentingSession
from callbridge.speech.asr.whisper import WhisperRecognizer
from callbridge.speech.asr.workers import WorkerPool
from callbridge.speech.grammars.base import Grammar, MatchKind, region_of

__all__ = ["SphinxJob", "SphinxModelFactory", "SphinxRecognizer"]

#: PocketSphinx frames are 10 ms.
_FRAME_MS: Final = 10
_NON_WORDS: Final = frozenset({"<s>", "</s>", "<sil>", "[NOISE]", "[SPEECH]", "NULL"})
_ALT_PRON_RE: Final = re.compile(r"\(\d+\)$")
_NBEST: Final = 5
#: Grammars PocketSphinx serves badly: the spelled letter-and-digit loop decodes at a real-time
#: factor of 1-8 and mostly wrong on 8 kHz telephone audio (speech corpus, 2024). With a
#: Whisper verifier these are decoded by Whisper alone and interpreted by the grammar.
WHISPER_GRAMMARS: Final = frozenset({"builtin:speech/spelling/mixed"})


@dataclass(frozen=True, slots=True)
class SphinxJob:
    """One utterance: 8 kHz PCM16 and the search to use.

    ``mode`` ``jsgf`` needs ``grammar`` (JSGF text); ``keyphrase`` needs ``keyphrases``;
    ``free`` uses the en-US trigram LM.
    """

    pcm: bytes
    mode: Literal["jsgf", "keyphrase", "free"]
    grammar: str = ""
    keyphrases: tuple[str, ...] = ()
    sample_rate: int = 8000


def _import_pocketsphinx() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import pocketsphinx  # type: ignore[import-untyped]
        except ImportError as exc:
            raise EngineUnavailable(
                "the sphinx engine needs the 'pocketsphinx' package (install callbridge[speech])"
            ) from exc
    return pocketsphinx


class _SphinxModel:
    """A PocketSphinx decoder with cached searches (lives in one worker process)."""

    def __init__(self, decoder: Any) -> None:
        self._decoder = decoder
        self._searches: set[str] = set()

    def _search_for(self, job: SphinxJob) -> str:
        d = self._decoder
        if job.mode == "free":
            return "free"
        key = job.grammar if job.mode == "jsgf" else "\n".join(job.keyphrases)
        name = f"{job.mode}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
        if name not in self._searches:
            if job.mode == "jsgf":
                d.add_jsgf_string(name, job.grammar)
            else:
                fd, path = tempfile.mkstemp(suffix=".kws", text=True)
                try:
                    with os.fdopen(fd, "w", encoding="utf-8") as f:
                        f.writelines(f"{p} /1e-20/\n" for p in job.keyphrases)
                    d.add_kws(name, path)
                finally:
                    os.unlink(path)
            self._searches.add(name)
        return name

    def run(self, job: SphinxJob) -> DecodeResult:
        d = self._decoder
        d.activate_search(self._search_for(job))
        wide = job.pcm
        if job.sample_rate != 16000:
            resampler = Resampler(job.sample_rate, 16000, quality="HQ")
            wide = resampler.process(job.pcm) + resampler.flush()
        d.start_utt()
        d.process_raw(wide, full_utt=True)
        d.end_utt()
        hyp = d.hyp()
        if hyp is None or not hyp.hypstr:
            return DecodeResult("", 0.0)
        words = tuple(
            Word(
                _ALT_PRON_RE.sub("", seg.word),
                seg.start_frame * _FRAME_MS,
                (seg.end_frame + 1) * _FRAME_MS,
                round(float(seg.prob), 3),
            )
            for seg in d.seg()
            if seg.word not in _NON_WORDS
        )
        confidence = round(float(hyp.prob), 3)
        nbest: list[Alternative] = [Alternative(hyp.hypstr, confidence)]
        if job.mode != "keyphrase":
            for entry in d.nbest():
                if len(nbest) >= _NBEST:
                    break
                text = getattr(entry, "hypstr", None)  # PocketSphinx may yield None entries
                if text and all(text != alt.transcript for alt in nbest):
                    nbest.append(Alternative(text, 0.0))
        return DecodeResult(hyp.hypstr, confidence, words, tuple(nbest))


@dataclass(frozen=True, slots=True)
class SphinxModelFactory:
    """Loads a PocketSphinx decoder (picklable); default: the en-US model of the package."""

    hmm: str | None = None
    dictionary: str | None = None
    lm: str | None = None

    def __call__(self) -> _SphinxModel:
        ps = _import_pocketsphinx()
        hmm = self.hmm or ps.get_model_path("en-us/en-us")
        dictionary = self.dictionary or ps.get_model_path("en-us/cmudict-en-us.dict")
        lm = self.lm or ps.get_model_path("en-us/en-us.lm.bin")
        decoder = ps.Decoder(hmm=hmm, dict=dictionary, samprate=16000, lm=None, loglevel="FATAL")
        decoder.add_lm_file("free", lm)
        return _SphinxModel(decoder)


class SphinxRecognizer(Recognizer):
    """PocketSphinx in worker processes, grammar-constrained where the grammar allows."""

    name = "sphinx"

    def __init__(
        self,
        *,
        workers: int = 1,
        queue_size: int = 16,
        verifier: WhisperRecognizer | None = None,
        min_confidence: float = 0.0,
        keyphrase_mode: bool = False,
        factory: SphinxModelFactory | None = None,
    ) -> None:
        if not 0.0 <= min_confidence <= 1.0:
            raise ValueError("min_confidence must be within [0, 1]")
        self.verifier = verifier
        self.min_confidence = min_confidence
        self.keyphrase_mode = keyphrase_mode
        self._pool: WorkerPool[SphinxJob, DecodeResult] = WorkerPool(
            factory or SphinxModelFactory(),
            kind="process",
            workers=workers,
            queue_size=queue_size,
            name="sphinx",
        )

    @property
    def pool(self) -> WorkerPool[SphinxJob, DecodeResult]:
        """The worker pool (exposed for supervision and tests)."""
        return self._pool

    def supports(self, grammar: Grammar | None, language: str = "en-US") -> bool:
        lang, _ = region_of(language)
        if lang != "en":
            return False
        return grammar is None or grammar.constraint(language).jsgf is not None

    async def start(self) -> None:
        await self._pool.start()

    async def aclose(self) -> None:
        await self._pool.aclose()

    def _job(
        self, pcm: bytes, grammar: Grammar | None, language: str, sample_rate: int = 8000
    ) -> SphinxJob:
        if grammar is None:
            return SphinxJob(pcm, "free", sample_rate=sample_rate)
        constraint = grammar.constraint(language)
        if self.keyphrase_mode and constraint.keyphrases:
            return SphinxJob(
                pcm, "keyphrase", keyphrases=constraint.keyphrases, sample_rate=sample_rate
            )
        if constraint.jsgf is None:
            raise ValueError(f"grammar {grammar.type} has no JSGF form for PocketSphinx")
        return SphinxJob(pcm, "jsgf", grammar=constraint.jsgf, sample_rate=sample_rate)

    async def recognize(
        self,
        pcm: bytes,
        grammar: Grammar | None = None,
        language: str = "en-US",
        *,
        sample_rate: int = 8000,
    ) -> DecodeResult:
        """Decode one PCM16 utterance (8 kHz unless ``sample_rate``) with the rejection layers
        (no endpointing)."""
        if grammar is not None and grammar.type in WHISPER_GRAMMARS and self.verifier is not None:
            return await self.verifier.transcribe(pcm, language=language, sample_rate=sample_rate)
        await self._pool.start()
        job = self._job(pcm, grammar, language, sample_rate)
        if grammar is None or self.verifier is None:
            result = await self._pool.submit(job)
            return self._threshold(result)
        sphinx_result, whisper_result = await asyncio.gather(
            self._pool.submit(job),
            self.verifier.transcribe(pcm, language=language, sample_rate=sample_rate),
        )
        return self.cross_check(self._threshold(sphinx_result), whisper_result, grammar, language)

    def _threshold(self, result: DecodeResult) -> DecodeResult:
        if result.transcript and result.confidence < self.min_confidence:
            return DecodeResult(
                result.transcript,
                result.confidence,
                result.words,
                result.nbest,
                rejected=True,
                reason=f"confidence {result.confidence} below {self.min_confidence}",
            )
        return result

    @staticmethod
    def cross_check(
        sphinx: DecodeResult, whisper: DecodeResult, grammar: Grammar, language: str
    ) -> DecodeResult:
        """Combine a constrained PocketSphinx result with a free Whisper transcript of the
        same utterance (the rejection layer; public so benchmarks reuse one Whisper decode)."""
        if sphinx.rejected:
            return sphinx
        check = grammar.interpret(whisper.transcript, language)
        if check.kind is MatchKind.NONE:
            return DecodeResult(
                sphinx.transcript,
                0.0,
                rejected=True,
                reason=f"out of grammar (cross-check heard {whisper.transcript!r})",
            )
        own = grammar.interpret(sphinx.transcript, language)
        if own.matched and own.value == check.value:
            return DecodeResult(
                sphinx.transcript,
                max(sphinx.confidence, whisper.confidence),
                sphinx.words,
                sphinx.nbest,
            )
        nbest = (Alternative(whisper.transcript, whisper.confidence), *sphinx.nbest)
        return DecodeResult(whisper.transcript, whisper.confidence * 0.9, whisper.words, nbest)

    async def _decode(self, pcm: bytes, final: bool, options: SessionOptions) -> DecodeResult:
        grammar = options.grammar
        if not final and grammar is not None and grammar.type in WHISPER_GRAMMARS and self.verifier:
            return await self.verifier.transcribe(pcm, final=False, language=options.language)
        if not final:  # interims: the constrained search alone
            job = self._job(pcm, options.grammar, options.language)
            return await self._pool.submit(job)
        return await self.recognize(pcm, options.grammar, options.language)

    def open_session(self, options: SessionOptions | None = None) -> RecognitionSession:
        options = options or SessionOptions()
        if not self.supports(options.grammar, options.language):
            kind = options.grammar.type if options.grammar else "free speech"
            raise ValueError(f"the sphinx engine cannot serve {kind} in {options.language}")
        return SegmentingSession(self._decode, options)

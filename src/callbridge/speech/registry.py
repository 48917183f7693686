"""Engine discovery: built-in engines plus plug-ins registered as entry points.

A plug-in package (Vosk, sherpa-onnx, …) registers a zero-argument factory::

    [project.entry-points."callbridge.asr_engines"]
    vosk = "callbridge_vosk:VoskRecognizer"

Built-ins are declared the same way in callbridge's own metadata and are also known here, so
discovery works from a source checkout. Engine modules are imported only when requested.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Final

from callbridge.speech.asr.base import Recognizer
from callbridge.speech.tts.base import Synthesizer

__all__ = [
    "ASR_GROUP",
    "BUILTIN_ASR",
    "BUILTIN_TTS",
    "TTS_GROUP",
    "asr_engines",
    "create_recognizer",
    "create_synthesizer",
    "tts_engines",
]

ASR_GROUP: Final = "callbridge.asr_engines"
TTS_GROUP: Final = "callbridge.tts_engines"
BUILTIN_ASR: Final = {
    "whisper": "callbridge.speech.asr.whisper:WhisperRecognizer",
    "sphinx": "callbridge.speech.asr.sphinx:SphinxRecognizer",
    "auto": "callbridge.speech.asr.auto:AutoRecognizer",
    "fused": "callbridge.speech.asr.auto:FusedRecognizer",
}
BUILTIN_TTS: Final = {
    "piper": "callbridge.speech.tts.piper:PiperSynthesizer",
    "espeak": "callbridge.speech.tts.espeak:EspeakSynthesizer",
}


def _engines(group: str, builtins: dict[str, str]) -> dict[str, str]:
    found = dict(builtins)
    for ep in entry_points(group=group):
        found.setdefault(ep.name, ep.value)
    return found


def asr_engines() -> dict[str, str]:
    """Engine name → ``module:attr`` of every recognizer (built-in and plug-in)."""
    return _engines(ASR_GROUP, BUILTIN_ASR)


def tts_engines() -> dict[str, str]:
    """Engine name → ``module:attr`` of every synthesizer (built-in and plug-in)."""
    return _engines(TTS_GROUP, BUILTIN_TTS)


def _load(target: str) -> Callable[[], object]:
    module, _, attr = target.partition(":")
    obj: object = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"engine entry point {target!r} is not callable")
    return obj


def _create(kind: str, engines: dict[str, str], name: str) -> object:
    target = engines.get(name)
    if target is None:
        raise ValueError(f"unknown {kind} engine {name!r}; available: {', '.join(sorted(engines))}")
    return _load(target)()


def create_recognizer(name: str = "whisper") -> Recognizer:
    """Instantiate a recognizer by engine name (raises EngineUnavailable if not installed)."""
    engine = _create("ASR", asr_engines(), name)
    if not isinstance(engine, Recognizer):
        raise TypeError(f"ASR engine {name!r} did not produce a Recognizer")
    return engine


def create_synthesizer(name: str = "piper") -> Synthesizer:
    """Instantiate a synthesizer by engine name (raises EngineUnavailable if not installed)."""
    engine = _create("TTS", tts_engines(), name)
    if not isinstance(engine, Synthesizer):
        raise TypeError(f"TTS engine {name!r} did not produce a Synthesizer")
    return engine

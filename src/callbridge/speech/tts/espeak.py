"""eSpeak NG through the shared library shipped by ``espeakng-loader`` (ctypes).

Licensing: eSpeak NG is GPL-3.0; the library is loaded only inside this module, lazily, on
first synthesis, so callbridge stays Apache-2.0 without the ``speech`` extra.

eSpeak NG keeps global state (one voice, one callback): **one synthesis at a time per
process**, enforced by a process-wide lock (ctypes releases the GIL during the call; the audio
callback takes it back per buffer). By default an :class:`EspeakSynthesizer` therefore
synthesises in ``workers`` worker processes (:mod:`callbridge.speech.tts.workers`, decision
044), each with the library initialised and warmed once, one sentence per job so long
prompts interleave fairly; ``workers=0`` synthesises in a thread of this process (the
``SYNCHRONOUS`` output mode), never on the event loop.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import threading
from collections.abc import Iterator
from typing import Any, Final

from callbridge.media.resample import Resampler
from callbridge.speech import EngineUnavailable
from callbridge.speech.tts.base import Segment, Synthesizer, Voice, silence
from callbridge.speech.tts.workers import SynthesisWorkers

__all__ = ["EspeakSynthesizer"]

_LOCK: Final = threading.Lock()
_WARM_UP_TEXT: Final = "Hello, this is a warm up."
_AUDIO_OUTPUT_SYNCHRONOUS: Final = 2
_CHARS_UTF8: Final = 1
_RATE_PARAM: Final = 1
_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)

#: (voice name, language, gender): eSpeak voices with the ``+f3`` female variant.
_VOICES: Final = (
    ("en-us", "en-US", "male"),
    ("en-us+f3", "en-US", "female"),
    ("en-gb", "en-GB", "male"),
    ("en-gb+f3", "en-GB", "female"),
    ("fr-fr", "fr-FR", "male"),
    ("fr-fr+f3", "fr-FR", "female"),
    ("de", "de-DE", "male"),
    ("es", "es-ES", "male"),
    ("it", "it-IT", "male"),
)
#: Our voice names that eSpeak NG knows under another identifier (it has no "en-gb"/"fr-fr").
_ESPEAK_IDS: Final = {
    "en-gb": "en",
    "en-gb+f3": "en+f3",
    "fr-fr": "fr",
    "fr-fr+f3": "fr+f3",
}


class _Engine:
    """The process-wide eSpeak NG library (initialised once)."""

    def __init__(self) -> None:
        try:
            import espeakng_loader  # type: ignore[import-untyped]
        except ImportError as exc:
            raise EngineUnavailable(
                "the espeak engine needs the 'espeakng-loader' package (install callbridge[speech])"
            ) from exc
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        data = espeakng_loader.get_data_path().encode()
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data, 0)
        if rate <= 0:
            raise EngineUnavailable(f"espeak_Initialize failed ({rate})")
        self.lib = lib
        self.sample_rate = int(rate)
        self._buffer = bytearray()
        self._callback = _CALLBACK(self._on_audio)  # keep a reference for the C side
        lib.espeak_SetSynthCallback(self._callback)

    def _on_audio(self, wav: Any, samples: int, _events: Any) -> int:
        if samples > 0 and wav:
            self._buffer.extend(ctypes.string_at(wav, samples * 2))
        return 0

    def speak(self, text: str, voice: str, wpm: int) -> bytes:
        """Blocking, caller holds ``_LOCK``: synthesise ``text`` at the engine's rate."""
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"eSpeak NG has no voice {voice!r}")
        self.lib.espeak_SetParameter(_RATE_PARAM, wpm, 0)
        self._buffer = bytearray()
        data = text.encode("utf-8")
        err = self.lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, _CHARS_UTF8, None, None)
        if err != 0:
            raise RuntimeError(f"espeak_Synth failed ({err})")
        return bytes(self._buffer)


_engine: _Engine | None = None


def _get_engine() -> _Engine:
    global _engine
    if _engine is None:
        _engine = _Engine()
    return _engine


def _check_installed() -> None:
    """EngineUnavailable without loading the GPL library (the worker loads it)."""
    if importlib.util.find_spec("espeakng_loader") is None:
        raise EngineUnavailable(
            "the espeak engine needs the 'espeakng-loader' package (install callbridge[speech])"
        )


class EspeakSynthesizer(Synthesizer):
    """eSpeak NG voices; ``wpm`` is the speaking rate in words per minute. Synthesis runs in
    ``workers`` worker processes (default 1; ``0``: a thread of this process); ``queue_size``
    bounds the sentences waiting for a worker."""

    name = "espeak"

    def __init__(
        self, *, wpm: int = 165, sample_rate: int = 8000, workers: int = 1, queue_size: int = 8
    ) -> None:
        if not 80 <= wpm <= 450:
            raise ValueError("wpm must be within 80..450")
        if workers < 0:
            raise ValueError("workers must be >= 0 (0 = synthesise in this process)")
        Resampler(sample_rate, sample_rate)  # validates the rate
        self._wpm = wpm
        #: Output rate (8 kHz, callbridge's internal format, unless asked otherwise).
        self.sample_rate = sample_rate
        if workers:
            in_worker = functools.partial(
                EspeakSynthesizer, wpm=wpm, sample_rate=sample_rate, workers=0
            )
            self._workers = SynthesisWorkers(
                self, in_worker, workers=workers, queue_size=queue_size, check=_check_installed
            )

    def voices(self) -> list[Voice]:
        return [Voice(n, lang, g, self.name) for n, lang, g in _VOICES]  # type: ignore[arg-type]

    def preload(self) -> None:
        """Blocking, in this process: initialise the library and warm it with one sentence."""
        self.synthesize_segment(Segment(_WARM_UP_TEXT), self.voices()[0])

    def synthesize_sentences(self, segments: list[Segment], voice: Voice) -> Iterator[bytes]:
        for segment in segments:
            yield self.synthesize_segment(segment, voice)

    def synthesize_segment(self, segment: Segment, voice: Voice) -> bytes:
        if segment.pause_ms:
            return silence(segment.pause_ms, self.sample_rate)
        with _LOCK:
            engine = _get_engine()
            pcm = engine.speak(segment.text, _ESPEAK_IDS.get(voice.name, voice.name), self._wpm)
        resampler = Resampler(engine.sample_rate, self.sample_rate, quality="HQ")
        return resampler.process(pcm) + resampler.flush()

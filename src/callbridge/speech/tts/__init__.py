"""Speech synthesis: the :class:`Synthesizer` interface, SSML subset, prompt cache, engines.

Engines (:mod:`.piper`, :mod:`.espeak`) are imported lazily through
:mod:`callbridge.speech.registry`.
"""

from __future__ import annotations

from callbridge.speech.tts.base import (
    AudioChunk,
    PromptCache,
    Segment,
    SsmlError,
    Synthesizer,
    Voice,
    parse_text,
)

__all__ = [
    "AudioChunk",
    "PromptCache",
    "Segment",
    "SsmlError",
    "Synthesizer",
    "Voice",
    "parse_text",
]

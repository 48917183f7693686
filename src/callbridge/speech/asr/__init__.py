"""Streaming speech recognition: the :class:`Recognizer` interface, engines and workers."""

from __future__ import annotations

from callbridge.speech.asr.base import (
    Final,
    Interim,
    NoMatch,
    RecognitionError,
    RecognitionEvent,
    RecognitionSession,
    Recognizer,
    SessionOptions,
    SpeechEnded,
    SpeechStarted,
    Word,
)
from callbridge.speech.asr.fake import FakeRecognizer, ScriptedUtterance

__all__ = [
    "FakeRecognizer",
    "Final",
    "Interim",
    "NoMatch",
    "RecognitionError",
    "RecognitionEvent",
    "RecognitionSession",
    "Recognizer",
    "ScriptedUtterance",
    "SessionOptions",
    "SpeechEnded",
    "SpeechStarted",
    "Word",
]

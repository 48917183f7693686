"""A scripted recognizer for unit tests of consumers (H2B, live transcription, flows).

:class:`FakeRecognizer` uses the real session machinery (VAD endpointing, ordering,
back-pressure) with a decoder that returns scripted results, one per utterance, in order;
feed it speech-like audio (e.g. tones) separated by silence.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from callbridge.media.vad import EnergyVAD
from callbridge.speech.asr.base import (
    Alternative,
    DecodeResult,
    RecognitionSession,
    Recognizer,
    SessionOptions,
)
from callbridge.speech.asr.session import SegmentingSession

__all__ = ["FakeRecognizer", "ScriptedUtterance"]


@dataclass(frozen=True, slots=True)
class ScriptedUtterance:
    """What the fake hears in the next utterance (``rejected`` → NoMatch)."""

    transcript: str
    confidence: float = 0.9
    rejected: bool = False
    interim: str = ""


class FakeRecognizer(Recognizer):
    """Returns scripted transcripts per utterance; endpointing on frame energy."""

    name = "fake"

    def __init__(
        self, script: Iterable[ScriptedUtterance | str] = (), *, delay: float = 0.0
    ) -> None:
        self._script: deque[ScriptedUtterance] = deque(
            s if isinstance(s, ScriptedUtterance) else ScriptedUtterance(s) for s in script
        )
        self._delay = delay
        self.decoded: list[bytes] = []
        self.sessions = 0

    def add(self, *utterances: ScriptedUtterance | str) -> None:
        """Append to the script."""
        for s in utterances:
            self._script.append(s if isinstance(s, ScriptedUtterance) else ScriptedUtterance(s))

    async def _decode(self, pcm: bytes, final: bool, options: SessionOptions) -> DecodeResult:
        if self._delay:
            await asyncio.sleep(self._delay)
        if not final:
            head = self._script[0] if self._script else None
            text = head.interim if head else ""
            return DecodeResult(text, 0.5)
        self.decoded.append(pcm)
        if not self._script:
            return DecodeResult("", 0.0)
        item = self._script.popleft()
        return DecodeResult(
            item.transcript,
            item.confidence,
            nbest=(Alternative(item.transcript, item.confidence),),
            rejected=item.rejected,
            reason="scripted rejection" if item.rejected else "",
        )

    def open_session(self, options: SessionOptions | None = None) -> RecognitionSession:
        self.sessions += 1
        return SegmentingSession(self._decode, options or SessionOptions(), vad=EnergyVAD(-40.0))

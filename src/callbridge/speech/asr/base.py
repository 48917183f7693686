"""The recognizer interface: streaming sessions fed 8 kHz PCM16 frames, typed events out.

A :class:`Recognizer` owns an engine (models, worker pool); it opens one
:class:`RecognitionSession` per audio stream. A session is fed 20 ms frames of the internal
format (:data:`~callbridge.media.constants.FRAME_BYTES` bytes) with :meth:`~RecognitionSession.push`
— which awaits when the engine is saturated (back-pressure) — and yields, in order:

* :class:`SpeechStarted` / :class:`SpeechEnded` at the endpoints of each utterance;
* :class:`Interim` hypotheses while an utterance is open (if enabled);
* exactly one :class:`Final` or :class:`NoMatch` per utterance;
* :class:`RecognitionError` if the engine failed on an utterance (the session goes on).

Free mode (``SessionOptions.grammar`` is ``None``) transcribes anything. Grammar mode
constrains the engine where it can and interprets the transcript with the grammar: a
transcript the grammar cannot interpret, or one the engine's rejection layer refused, is a
:class:`NoMatch`, never a forced answer.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TypeAlias

from callbridge.speech.grammars.base import Grammar, Interpretation

__all__ = [
    "Alternative",
    "DecodeResult",
    "Final",
    "Interim",
    "NoMatch",
    "RecognitionError",
    "RecognitionEvent",
    "RecognitionSession",
    "Recognizer",
    "SessionOptions",
    "SpeechEnded",
    "SpeechStarted",
    "Word",
]


@dataclass(frozen=True, slots=True)
class Word:
    """A recognised word with its position from the start of the stream (ms)."""

    text: str
    start_ms: int
    end_ms: int
    confidence: float = 1.0


@dataclass(frozen=True, slots=True)
class Alternative:
    """One entry of an N-best list."""

    transcript: str
    confidence: float


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """Speech began at ``time_ms`` from the start of the stream."""

    time_ms: int


@dataclass(frozen=True, slots=True)
class SpeechEnded:
    """Speech ended at ``time_ms`` (first non-speech frame after the utterance)."""

    time_ms: int


@dataclass(frozen=True, slots=True)
class Interim:
    """A provisional hypothesis of the open utterance."""

    text: str
    time_ms: int


@dataclass(frozen=True, slots=True)
class Final:
    """The result of one utterance.

    ``interpretation`` is set in grammar mode (the grammar's value of the transcript);
    ``nbest`` starts with the best hypothesis.
    """

    transcript: str
    confidence: float
    start_ms: int
    end_ms: int
    words: tuple[Word, ...] = ()
    nbest: tuple[Alternative, ...] = ()
    interpretation: Interpretation | None = None


@dataclass(frozen=True, slots=True)
class NoMatch:
    """The utterance was heard but not recognised (``reason`` says why)."""

    reason: str
    start_ms: int
    end_ms: int
    transcript: str = ""


@dataclass(frozen=True, slots=True)
class RecognitionError:
    """The engine failed on an utterance; the session continues."""

    message: str
    start_ms: int
    end_ms: int


RecognitionEvent: TypeAlias = (
    SpeechStarted | SpeechEnded | Interim | Final | NoMatch | RecognitionError
)


@dataclass(frozen=True, slots=True)
class SessionOptions:
    """Per-session settings.

    ``speech_start_ms``/``speech_end_ms`` are the endpointer's hysteresis (speech needed to
    open an utterance, silence needed to close it); ``max_utterance_ms`` forces an endpoint.
    ``interim_interval_ms`` bounds how often the growing utterance is re-decoded.
    ``join_within_ms`` (0: off) joins an utterance that starts at most that long after the
    previous one ended to it: the decoder gets both with the pause between, as one utterance,
    and the final's ``start_ms`` is the first one's, so it supersedes the earlier final(s).
    A speaker who pauses mid-answer ("my number is … four five six … seven") is then decoded
    with the whole answer as context instead of in fragments that are read alone.
    """

    grammar: Grammar | None = None
    language: str = "en-US"
    interim_results: bool = False
    interim_interval_ms: int = 700
    speech_start_ms: int = 60
    speech_end_ms: int = 500
    max_utterance_ms: int = 20_000
    vad_aggressiveness: int = 2
    join_within_ms: int = 0

    def __post_init__(self) -> None:
        if self.interim_interval_ms < 100:
            raise ValueError("interim_interval_ms must be >= 100")
        if self.speech_start_ms < 20 or self.speech_end_ms < 20:
            raise ValueError("speech_start_ms and speech_end_ms must be >= 20")
        if self.max_utterance_ms < 1000:
            raise ValueError("max_utterance_ms must be >= 1000")
        if self.join_within_ms < 0:
            raise ValueError("join_within_ms must be >= 0")


@dataclass(frozen=True, slots=True)
class DecodeResult:
    """What an engine returns for one utterance (times relative to the utterance start)."""

    transcript: str
    confidence: float
    words: tuple[Word, ...] = ()
    nbest: tuple[Alternative, ...] = field(default=())
    rejected: bool = False
    reason: str = ""


class RecognitionSession(ABC):
    """One audio stream under recognition (see the module docstring for the contract)."""

    @abstractmethod
    async def push(self, frame: bytes) -> None:
        """Feed one 20 ms frame; awaits under back-pressure; ValueError for a bad frame."""

    @abstractmethod
    async def finish(self) -> None:
        """End of audio: close an open utterance and wait for its result; events then end."""

    @abstractmethod
    async def aclose(self) -> None:
        """Abandon the session (pending decodes are cancelled); idempotent."""

    @abstractmethod
    def events(self) -> AsyncIterator[RecognitionEvent]:
        """The session's events in order; ends after :meth:`finish` or :meth:`aclose`."""


class Recognizer(ABC):
    """A recognition engine that opens streaming sessions."""

    #: Engine name used by discovery and the CLI (``whisper``, ``sphinx``, ``fake``).
    name: str = ""

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Load models and start workers (idempotent). Sessions call it lazily."""

    def supports(self, grammar: Grammar | None, language: str = "en-US") -> bool:
        """True if this engine can serve ``grammar`` (``None`` = free mode) in ``language``."""
        return True

    @abstractmethod
    def open_session(self, options: SessionOptions | None = None) -> RecognitionSession:
        """A new session; raises ValueError if the grammar or language is unsupported."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Stop workers and release models."""

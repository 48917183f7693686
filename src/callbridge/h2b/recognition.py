"""One recognition's life cycle on the audio clock (h2b.md §6, §7): pure, no I/O.

The session engine feeds a :class:`Recognition` the session audio clock (milliseconds of audio
received) and the speech engine's endpoint and result events, mapped onto that clock. It
answers with the H2B events to send (``START-OF-INPUT``, ``RECOGNITION-COMPLETE``) and tells
the engine when its next timer falls due (:meth:`Recognition.next_deadline_ms`) so the engine
can cut audio chunks exactly there.

Timers:

* no-input: from timers start (RECOGNIZE or START-INPUT-TIMERS) until the first onset;
* recognition timeout (normal mode) / hotword max duration (hotword mode): from the first onset;
* end of utterance (normal mode): from the first silent frame after the last utterance, whose
  length depends on how the hypothesis matches (complete / incomplete / no-match timeouts).
  A result still being decoded defers the decision; when it arrives late the recognition
  completes at once.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from callbridge import __version__
from callbridge.h2b.params import Params, RecognitionMode
from callbridge.h2b.protocol import CompletionCause, EventName, H2BEvent
from callbridge.observability.logging import get_logger
from callbridge.speech.grammars.base import Grammar, Interpretation, MatchKind

__all__ = ["GrammarChoice", "Recognition", "Segment"]

log = get_logger(__name__)

#: Longest suffix search in hotword mode (words).
_HOTWORD_MAX_WORDS: Final = 64


@dataclass(frozen=True, slots=True)
class GrammarChoice:
    """A grammar of a RECOGNIZE: the URI as the client wrote it and the loaded grammar."""

    uri: str
    grammar: Grammar


@dataclass(frozen=True, slots=True)
class Segment:
    """One decoded utterance, times on the session audio clock (ms)."""

    transcript: str
    confidence: float
    start_ms: int
    end_ms: int
    alternatives: tuple[tuple[str, float], ...] = ()


class _Phase(enum.Enum):
    LISTENING = "listening"
    DONE = "done"


@dataclass(frozen=True, slots=True)
class _Match:
    choice: GrammarChoice
    interpretation: Interpretation


class Recognition:
    """A running RECOGNIZE (see the module docstring)."""

    def __init__(
        self,
        *,
        request_id: int,
        channel_id: str,
        params: Params,
        grammars: Sequence[GrammarChoice],
        now_ms: int,
        epoch_ms: int,
        asr_model: str = "",
    ) -> None:
        self.request_id = request_id
        self.channel_id = channel_id
        self.params = params
        self.grammars = tuple(grammars)
        self._epoch_ms = epoch_ms
        self._asr_model = asr_model
        self._phase = _Phase.LISTENING
        self._hotword = params.recognition_mode is RecognitionMode.HOTWORD
        self._timers_ms: int | None = now_ms if params.start_input_timers else None
        self._onset_ms: int | None = None
        self._in_speech = False
        self._pending = 0
        self._silence_ms: int | None = None
        self._segments: list[Segment] = []
        self._start_of_input_sent = False

    # -- state -----------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        """True once RECOGNITION-COMPLETE was produced."""
        return self._phase is _Phase.DONE

    @property
    def heard(self) -> bool:
        """True once speech was detected."""
        return self._onset_ms is not None

    def next_deadline_ms(self) -> int | None:
        """The earliest pending timer (session clock, ms), or ``None``."""
        if self.done:
            return None
        candidates = [d for d in (self._no_input_deadline(), self._cap_deadline()) if d is not None]
        end = self._end_deadline()
        if end is not None:
            candidates.append(end)
        return min(candidates) if candidates else None

    def _no_input_deadline(self) -> int | None:
        if self._timers_ms is None or self._onset_ms is not None or self._in_speech:
            return None
        return self._timers_ms + self.params.no_input_timeout

    def _cap_deadline(self) -> int | None:
        if self._onset_ms is None:
            return None
        if self._hotword:
            return self._onset_ms + self.params.hotword_max_duration
        return self._onset_ms + self.params.recognition_timeout

    def _end_deadline(self) -> int | None:
        if self._hotword or self._in_speech or self._pending or self._silence_ms is None:
            return None
        if self._onset_ms is None:
            return None
        match = self._best(self._hypothesis())
        if match is None:
            timeout = self.params.speech_nomatch_timeout
        elif match.interpretation.kind is MatchKind.FULL:
            timeout = self.params.speech_complete_timeout
        else:
            timeout = self.params.speech_incomplete_timeout
        return self._silence_ms + timeout

    # -- inputs ----------------------------------------------------------------------------

    def start_input_timers(self, now_ms: int) -> None:
        """START-INPUT-TIMERS: start the no-input timer (no effect if already running)."""
        if self._timers_ms is None:
            self._timers_ms = now_ms

    def speech_started(self, at_ms: int) -> list[H2BEvent]:
        """Speech onset at ``at_ms``: cancels no-input and any end-of-utterance wait."""
        if self.done:
            return []
        self._in_speech = True
        self._silence_ms = None
        if self._onset_ms is None:
            self._onset_ms = at_ms
        return self._start_of_input()

    def speech_ended(self, at_ms: int) -> None:
        """The utterance's first silent frame is at ``at_ms``; its result is now pending."""
        if self.done:
            return
        self._in_speech = False
        self._pending += 1
        self._silence_ms = at_ms

    def result(self, segment: Segment | None, now_ms: int) -> list[H2BEvent]:
        """The decoded utterance (``None``: nothing usable was heard)."""
        if self.done:
            return []
        self._pending = max(0, self._pending - 1)
        if segment is not None and segment.transcript.strip():
            # A joined utterance (SessionOptions.join_within_ms) starts where the segments it
            # was decoded with did: it supersedes them.
            self._segments = [s for s in self._segments if s.start_ms < segment.start_ms]
            self._segments.append(segment)
        if self._hotword:
            return self._hotword_check()
        return self.tick(now_ms)

    def error(self, message: str) -> list[H2BEvent]:
        """The engine failed: complete with ``Error``."""
        if self.done:
            return []
        return self._complete(CompletionCause.ERROR, message[:200] or "recognizer error", None)

    def tick(self, now_ms: int) -> list[H2BEvent]:
        """The audio clock reached ``now_ms``: fire due timers."""
        if self.done:
            return []
        deadline = self._no_input_deadline()
        if deadline is not None and now_ms >= deadline:
            return self._complete(CompletionCause.NO_INPUT_TIMEOUT, "no voice", None, asr=False)
        deadline = self._cap_deadline()
        if deadline is not None and now_ms >= deadline:
            return self._at_cap()
        deadline = self._end_deadline()
        if deadline is not None and now_ms >= deadline:
            return self._at_end()
        return []

    # -- decisions -------------------------------------------------------------------------

    def _hypothesis(self) -> str:
        return " ".join(s.transcript.strip() for s in self._segments if s.transcript.strip())

    def _best(self, text: str) -> _Match | None:
        if not text:
            return None
        partial: _Match | None = None
        for choice in self.grammars:
            try:
                interp = choice.grammar.interpret(text, self.params.speech_language)
            except Exception:  # a grammar bug must not kill the session
                log.exception("grammar failed", grammar=choice.uri)
                continue
            if interp.kind is MatchKind.FULL:
                return _Match(choice, interp)
            if interp.kind is MatchKind.PARTIAL and partial is None:
                partial = _Match(choice, interp)
        return partial

    @staticmethod
    def _score(match: _Match) -> float:
        """The NLU confidence compared with ``confidence_threshold``: the grammar's.

        The engines' transcript confidences are not calibrated like the vendor's (Whisper
        gives ~0.4 to a clean "yes"), and rejecting doubtful audio is the engine's own job
        in grammar mode, so the transcript confidence is reported in ``asr`` only.
        """
        return match.interpretation.confidence

    def _accepted(self, match: _Match | None) -> bool:
        return match is not None and self._score(match) >= self.params.confidence_threshold

    def _at_end(self) -> list[H2BEvent]:
        match = self._best(self._hypothesis())
        if match is None:
            return self._complete(CompletionCause.NO_MATCH, "unable to match grammar", None)
        if not self._accepted(match):
            return self._complete(CompletionCause.NO_MATCH, "confidence too low", None)
        if match.interpretation.kind is MatchKind.FULL:
            return self._complete(CompletionCause.SUCCESS, "success", match)
        return self._complete(CompletionCause.PARTIAL_MATCH, "partial match", match)

    def _at_cap(self) -> list[H2BEvent]:
        if self._hotword:
            return self._complete(CompletionCause.HOTWORD_MAXTIME, "hotword max time", None)
        match = self._best(self._hypothesis())
        if match is None or not self._accepted(match):
            return self._complete(CompletionCause.NO_MATCH_MAXTIME, "recognition timeout", None)
        if match.interpretation.kind is MatchKind.FULL:
            return self._complete(CompletionCause.SUCCESS_MAXTIME, "recognition timeout", match)
        return self._complete(CompletionCause.PARTIAL_MATCH_MAXTIME, "recognition timeout", match)

    def _hotword_check(self) -> list[H2BEvent]:
        words = self._hypothesis().split()
        for i in range(min(len(words), _HOTWORD_MAX_WORDS)):
            text = " ".join(words[i:])
            match = self._best(text)
            if (
                match is not None
                and match.interpretation.kind is MatchKind.FULL
                and self._accepted(match)
            ):
                return self._complete(CompletionCause.SUCCESS, "success", match, text=text)
        return []

    # -- output ----------------------------------------------------------------------------

    def _start_of_input(self) -> list[H2BEvent]:
        if self._hotword or self._start_of_input_sent:
            return []
        self._start_of_input_sent = True
        return [H2BEvent(EventName.START_OF_INPUT, self.request_id, self.channel_id)]

    def _complete(
        self,
        cause: CompletionCause,
        reason: str,
        match: _Match | None,
        *,
        asr: bool = True,
        text: str | None = None,
    ) -> list[H2BEvent]:
        self._phase = _Phase.DONE
        out: list[H2BEvent] = []
        if cause is not CompletionCause.NO_INPUT_TIMEOUT:
            out.extend(self._start_of_input())
        body = self._body(match, asr=asr and cause is not CompletionCause.ERROR, text=text)
        out.append(
            H2BEvent(
                EventName.RECOGNITION_COMPLETE,
                self.request_id,
                self.channel_id,
                completion_cause=cause,
                completion_reason=reason,
                body=body,
            )
        )
        return out

    def _asr(self, transcript: str, confidence: float) -> dict[str, Any] | None:
        if not self._segments:
            return None
        start = self._segments[0].start_ms
        end = self._segments[-1].end_ms
        return {
            "transcript": transcript,
            "confidence": round(max(0.0, min(1.0, confidence)), 3),
            "start": self._epoch_ms + start,
            "end": self._epoch_ms + max(start, end),
            "phones": "",
        }

    def _nlu(self, match: _Match | None) -> dict[str, Any] | None:
        if match is None:
            return None
        interp = match.interpretation
        return {"type": interp.type, "value": interp.value, "confidence": self._score(match)}

    def _confidence(self) -> float:
        """Mean confidence of the decoded utterances (rejected ones carry 0 and are skipped)."""
        scored = [s.confidence for s in self._segments if s.confidence > 0.0]
        if not scored:
            return 0.0 if self._segments else 1.0
        return sum(scored) / len(scored)

    def _body(self, match: _Match | None, *, asr: bool, text: str | None) -> dict[str, Any]:
        transcript = text if text is not None else self._hypothesis()
        body: dict[str, Any] = {
            "asr": self._asr(transcript, self._confidence()) if asr else None,
            "nlu": self._nlu(match),
            "grammar_uri": match.choice.uri if match is not None else "",
            "version": __version__,
            "asr_model": self._asr_model,
        }
        if self.params.n_best_list_length > 1:
            body["alternatives"] = self._alternatives(match, asr=asr)
        return body

    def _alternatives(self, best: _Match | None, *, asr: bool) -> list[dict[str, Any]]:
        if not asr or not self._segments:
            return []
        prefix = " ".join(s.transcript.strip() for s in self._segments[:-1])
        out: list[dict[str, Any]] = []
        for alt_text, alt_conf in self._segments[-1].alternatives[1:]:
            if len(out) >= self.params.n_best_list_length - 1:
                break
            transcript = f"{prefix} {alt_text.strip()}".strip()
            match = self._best(transcript) if best is not None else None
            if match is not None and not self._accepted(match):
                match = None
            out.append(
                {
                    "asr": self._asr(transcript, alt_conf),
                    "nlu": self._nlu(match),
                    "grammar_uri": match.choice.uri if match is not None else "",
                }
            )
        return out

"""The H2B session engine (h2b.md §2, §7, §8): a sans-I/O state machine per connection.

Feed it text frames (:meth:`H2BEngine.handle_text`), binary frames
(:meth:`~H2BEngine.handle_audio`), the speech engine's events
(:meth:`~H2BEngine.handle_recognizer`) and, when the client goes quiet, wall-clock silence
(:meth:`~H2BEngine.handle_silence`). Each call returns :data:`Output` items in order: events to
send and instructions for the recognizer shell (start a speech session with a pre-roll, push
20 ms frames, stop it) and the accounting record of an ended session.

States are explicit (:class:`SessionState`): which commands are legal where is the table
:data:`LEGAL_COMMANDS`, and :data:`TRANSITIONS` lists the only state changes the engine may
make (anything else raises :class:`IllegalTransition`, a bug, never a client error).
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias

from callbridge.h2b.audio import AudioCodec, AudioDecoder, PrerollRing, parse_codec
from callbridge.h2b.params import ParamError, Params, RecognitionMode, apply_params
from callbridge.h2b.protocol import (
    Command,
    CommandName,
    CompletionCause,
    EventName,
    H2BEvent,
    parse_command,
)
from callbridge.h2b.recognition import GrammarChoice, Recognition, Segment
from callbridge.media.assembler import FrameAssembler
from callbridge.media.constants import BYTES_PER_SAMPLE, FRAME_BYTES, SAMPLE_RATE
from callbridge.speech.asr.base import (
    Final as FinalResult,
)
from callbridge.speech.asr.base import (
    NoMatch,
    RecognitionError,
    RecognitionEvent,
    SessionOptions,
    SpeechEnded,
    SpeechStarted,
)
from callbridge.speech.grammars import Grammar, GrammarError, load_grammar

__all__ = [
    "LEGAL_COMMANDS",
    "TRANSITIONS",
    "H2BEngine",
    "IllegalTransition",
    "Output",
    "PushAudio",
    "Send",
    "SessionEnded",
    "SessionRecord",
    "SessionState",
    "StartRecognizer",
    "StopRecognizer",
    "join_within_ms",
]

_SAMPLES_PER_MS: Final = SAMPLE_RATE // 1000
#: Most grammars in one RECOGNIZE and most aliases per session.
MAX_GRAMMARS: Final = 16
MAX_ALIASES: Final = 128
MAX_ID_LENGTH: Final = 128


class SessionState(enum.Enum):
    """The SDK's three protocol states (h2b.md §8)."""

    NO_SESSION = "no session"
    IDLE = "idle session"
    RECOGNITION = "recognition"


class IllegalTransition(RuntimeError):
    """The engine tried a state change outside :data:`TRANSITIONS` (a bug)."""


LEGAL_COMMANDS: Final[Mapping[SessionState, frozenset[CommandName]]] = {
    SessionState.NO_SESSION: frozenset({CommandName.OPEN}),
    SessionState.IDLE: frozenset(
        {
            CommandName.SET_PARAMS,
            CommandName.GET_PARAMS,
            CommandName.DEFINE_GRAMMAR,
            CommandName.RECOGNIZE,
            CommandName.CLOSE,
        }
    ),
    SessionState.RECOGNITION: frozenset(
        {CommandName.START_INPUT_TIMERS, CommandName.STOP, CommandName.CLOSE}
    ),
}

TRANSITIONS: Final[frozenset[tuple[SessionState, SessionState]]] = frozenset(
    {
        (SessionState.NO_SESSION, SessionState.IDLE),  # OPEN
        (SessionState.IDLE, SessionState.RECOGNITION),  # RECOGNIZE
        (SessionState.RECOGNITION, SessionState.IDLE),  # COMPLETE / STOP
        (SessionState.IDLE, SessionState.NO_SESSION),  # CLOSE / connection lost
        (SessionState.RECOGNITION, SessionState.NO_SESSION),  # CLOSE / connection lost
    }
)


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``event`` as a text frame."""

    event: H2BEvent


@dataclass(frozen=True, slots=True)
class StartRecognizer:
    """Open speech session ``rec_id`` with ``options`` and feed it ``preroll`` frames first."""

    rec_id: int
    options: SessionOptions
    preroll: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class PushAudio:
    """Feed 20 ms PCM16 frames to speech session ``rec_id``."""

    rec_id: int
    frames: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class StopRecognizer:
    """Abandon speech session ``rec_id``; its later events are ignored."""

    rec_id: int


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """What is kept of an H2B session for accounting."""

    channel_id: str
    custom_id: str
    session_id: str
    audio_codec: str
    opened_ms: int
    closed_ms: int
    recognitions: int
    recognized_ms: int


@dataclass(frozen=True, slots=True)
class SessionEnded:
    """A session ended (CLOSE or connection loss)."""

    record: SessionRecord


Output: TypeAlias = Send | StartRecognizer | PushAudio | StopRecognizer | SessionEnded


@dataclass(slots=True)
class _Session:
    channel_id: str
    custom_id: str
    session_id: str
    decoder: AudioDecoder
    params: Params
    opened_ms: int
    aliases: dict[str, str] = field(default_factory=dict)
    preroll: PrerollRing = field(default_factory=PrerollRing)
    samples: int = 0
    recognized_samples: int = 0
    recognitions: int = 0

    @property
    def now_ms(self) -> int:
        return self.samples // _SAMPLES_PER_MS


@dataclass(slots=True)
class _Active:
    rec_id: int
    recognition: Recognition
    base_ms: int
    assembler: FrameAssembler = field(default_factory=FrameAssembler)


def join_within_ms(params: Params) -> int:
    """How soon after an utterance resumed speech still continues it (0: never): the
    longest end-of-speech timer, since speech before the applicable one fires keeps the
    recognition open. Hotword mode joins nothing: non-matching speech is skipped there."""
    if params.recognition_mode is not RecognitionMode.NORMAL:
        return 0
    return max(
        params.speech_complete_timeout,
        params.speech_incomplete_timeout,
        params.speech_nomatch_timeout,
    )


def _random_suffix() -> str:
    return secrets.token_hex(7)[:13]


def _always(_language: str, _grammars: Sequence[Grammar]) -> bool:
    return True


class H2BEngine:
    """One connection's sessions (see the module docstring).

    ``epoch_ms`` gives wall time (Unix ms) for result timestamps; ``language_supported`` says
    whether the speech engine serves a language with these grammars; ``channel_suffix`` makes
    the 13 hex digits of a channel id.
    """

    def __init__(
        self,
        *,
        epoch_ms: Callable[[], int],
        language_supported: Callable[[str, Sequence[Grammar]], bool] = _always,
        channel_suffix: Callable[[], str] = _random_suffix,
        default_language: str = "en",
        asr_model: str = "",
    ) -> None:
        self._epoch_ms = epoch_ms
        self._language_supported = language_supported
        self._channel_suffix = channel_suffix
        self._default_params = Params(speech_language=default_language)
        self._asr_model = asr_model
        self.state = SessionState.NO_SESSION
        self._session: _Session | None = None
        self._active: _Active | None = None
        self._rec_counter = 0

    # -- introspection -----------------------------------------------------------------------

    @property
    def channel_id(self) -> str:
        """The open session's channel id, ``""`` outside a session."""
        return self._session.channel_id if self._session is not None else ""

    @property
    def active_recognizer(self) -> int | None:
        """The speech session id of the running recognition."""
        return self._active.rec_id if self._active is not None else None

    def _set_state(self, new: SessionState) -> None:
        if (self.state, new) not in TRANSITIONS:
            raise IllegalTransition(f"{self.state.value} -> {new.value}")
        self.state = new

    # -- text frames ---------------------------------------------------------------------------

    def handle_text(self, text: str | bytes) -> list[Output]:
        """One command frame; always at least one :class:`Send`."""
        parsed = parse_command(text, self.channel_id)
        if isinstance(parsed, H2BEvent):
            return [Send(parsed)]
        return self.handle_command(parsed)

    def handle_command(self, cmd: Command) -> list[Output]:
        """One parsed command (state check, then the command's handler)."""
        session = self._session
        if (
            session is not None
            and cmd.name is not CommandName.OPEN
            and cmd.channel_id
            and cmd.channel_id != session.channel_id
        ):
            return [
                self._error(
                    EventName.METHOD_NOT_VALID, cmd, f"unknown channel_id {cmd.channel_id[:64]!r}"
                )
            ]
        if cmd.name not in LEGAL_COMMANDS[self.state]:
            return [
                self._error(
                    EventName.METHOD_NOT_ALLOWED,
                    cmd,
                    f"{cmd.name} not allowed in {self.state.value}",
                )
            ]
        handler = self._HANDLERS[cmd.name]
        return handler(self, cmd)

    def _error(
        self,
        name: EventName,
        cmd: Command,
        reason: str,
        cause: CompletionCause | None = None,
    ) -> Send:
        return Send(H2BEvent(name, cmd.request_id, self.channel_id, {}, cause, reason))

    def _reply(
        self,
        name: EventName,
        cmd: Command,
        *,
        headers: Mapping[str, Any] | None = None,
        success: bool = False,
    ) -> Send:
        cause = CompletionCause.SUCCESS if success else None
        return Send(
            H2BEvent(
                name,
                cmd.request_id,
                self.channel_id,
                headers or {},
                cause,
                "success" if success else None,
            )
        )

    # -- command handlers ----------------------------------------------------------------------

    def _open(self, cmd: Command) -> list[Output]:
        h = cmd.headers
        codec_value = h.get("audio_codec", "linear")
        codec = AudioCodec.LINEAR if codec_value in (None, "") else parse_codec(codec_value)
        if codec is None:
            return [
                self._error(
                    EventName.INVALID_PARAM_VALUE,
                    cmd,
                    f"audio_codec: unsupported codec {str(codec_value)[:40]!r} "
                    "(linear, g711a, g711u)",
                )
            ]
        ids: dict[str, str] = {}
        for key in ("custom_id", "session_id"):
            value = h.get(key, "")
            if value is None:
                value = ""
            if isinstance(value, int | float) and not isinstance(value, bool):
                value = str(value)
            if not isinstance(value, str) or len(value) > MAX_ID_LENGTH:
                return [
                    self._error(
                        EventName.INVALID_PARAM_VALUE,
                        cmd,
                        f"{key}: expected a string of at most {MAX_ID_LENGTH} characters",
                    )
                ]
            ids[key] = value
        prefix = cmd.channel_id
        if len(prefix) > 64 or not all(c.isprintable() and not c.isspace() for c in prefix):
            return [
                self._error(
                    EventName.INVALID_PARAM_VALUE,
                    cmd,
                    "channel_id: the prefix must be at most 64 printable characters",
                )
            ]
        self._session = _Session(
            channel_id=prefix + self._channel_suffix(),
            custom_id=ids["custom_id"],
            session_id=ids["session_id"],
            decoder=AudioDecoder(codec),
            params=self._default_params,
            opened_ms=self._epoch_ms(),
        )
        self._set_state(SessionState.IDLE)
        return [self._reply(EventName.OPENED, cmd)]

    def _set_params(self, cmd: Command) -> list[Output]:
        session = self._require_session()
        try:
            params, _unknown = apply_params(session.params, cmd.headers)
        except ParamError as exc:
            return [self._error(EventName.INVALID_PARAM_VALUE, cmd, str(exc))]
        session.params = params
        return [self._reply(EventName.PARAMS_SET, cmd)]

    def _get_params(self, cmd: Command) -> list[Output]:
        session = self._require_session()
        return [self._reply(EventName.DEFAULT_PARAMS, cmd, headers=session.params.to_headers())]

    def _define_grammar(self, cmd: Command) -> list[Output]:
        session = self._require_session()
        content_id = cmd.headers.get("content_id")
        if content_id is None or content_id == "":
            return [self._error(EventName.MISSING_PARAM, cmd, "content_id is required")]
        if not isinstance(content_id, str) or len(content_id) > MAX_ID_LENGTH:
            return [
                self._error(
                    EventName.INVALID_PARAM_VALUE,
                    cmd,
                    f"content_id: expected a string of at most {MAX_ID_LENGTH} characters",
                )
            ]
        content_type = cmd.headers.get("content_type", "text/uri-list")
        if content_type != "text/uri-list":
            return [
                self._error(
                    EventName.INVALID_PARAM_VALUE, cmd, "content_type: must be 'text/uri-list'"
                )
            ]
        body = cmd.body.strip()
        if not body:
            return [self._error(EventName.MISSING_PARAM, cmd, "body is required")]
        alias = content_id.removeprefix("session:")
        if alias not in session.aliases and len(session.aliases) >= MAX_ALIASES:
            return [
                self._error(
                    EventName.METHOD_FAILED,
                    cmd,
                    f"too many grammar aliases (at most {MAX_ALIASES})",
                    CompletionCause.GRAM_DEFINITION_FAILURE,
                )
            ]
        if not body.startswith("builtin:") or "\n" in body:
            return [
                self._error(
                    EventName.METHOD_FAILED,
                    cmd,
                    "the body must be one builtin: grammar URI",
                    CompletionCause.GRAM_DEFINITION_FAILURE,
                )
            ]
        try:
            load_grammar(body)
        except GrammarError as exc:
            return [
                self._error(
                    EventName.METHOD_FAILED,
                    cmd,
                    f"invalid grammar {body[:200]!r}: {exc}",
                    CompletionCause.GRAM_DEFINITION_FAILURE,
                )
            ]
        session.aliases[alias] = body
        return [self._reply(EventName.GRAMMAR_DEFINED, cmd, success=True)]

    def _recognize(self, cmd: Command) -> list[Output]:
        session = self._require_session()
        try:
            params, _unknown = apply_params(session.params, cmd.headers)
        except ParamError as exc:
            return [self._error(EventName.INVALID_PARAM_VALUE, cmd, str(exc))]
        uris = [line.strip() for line in cmd.body.splitlines() if line.strip()]
        if not uris:
            return [self._error(EventName.MISSING_PARAM, cmd, "body is required")]
        if len(uris) > MAX_GRAMMARS:
            return [
                self._error(
                    EventName.METHOD_FAILED,
                    cmd,
                    f"at most {MAX_GRAMMARS} grammars per RECOGNIZE",
                    CompletionCause.GRAM_LOAD_FAILURE,
                )
            ]
        choices: list[GrammarChoice] = []
        for uri in uris:
            try:
                grammar = load_grammar(uri, session.aliases)
            except GrammarError as exc:
                text = str(exc)
                if "unknown" in text or "unsupported grammar URI" in text:
                    reason = f"unknown grammar '{uri[:200]}'"
                else:
                    reason = f"grammar '{uri[:200]}': {text}"
                return [
                    self._error(
                        EventName.METHOD_FAILED, cmd, reason, CompletionCause.GRAM_LOAD_FAILURE
                    )
                ]
            choices.append(GrammarChoice(uri, grammar))
        language = params.speech_language
        grammars = [c.grammar for c in choices]
        try:
            for grammar in grammars:
                grammar.check_language(language)
            supported = self._language_supported(language, grammars)
        except GrammarError:
            supported = False
        if not supported:
            return [
                self._error(
                    EventName.METHOD_FAILED,
                    cmd,
                    f"language '{language}' unsupported",
                    CompletionCause.LANGUAGE_UNSUPPORTED,
                )
            ]
        self._rec_counter += 1
        preroll = session.preroll.take()
        preroll = preroll[len(preroll) % FRAME_BYTES :]
        base_ms = session.now_ms - len(preroll) // (BYTES_PER_SAMPLE * _SAMPLES_PER_MS)
        recognition = Recognition(
            request_id=cmd.request_id,
            channel_id=session.channel_id,
            params=params,
            grammars=choices,
            now_ms=session.now_ms,
            epoch_ms=session.opened_ms,
            asr_model=self._asr_model,
        )
        self._active = _Active(self._rec_counter, recognition, base_ms)
        session.recognitions += 1
        self._set_state(SessionState.RECOGNITION)
        single = len(grammars) == 1 and params.recognition_mode is RecognitionMode.NORMAL
        options = SessionOptions(
            grammar=grammars[0] if single else None,
            language=language,
            speech_end_ms=max(100, min(300, params.speech_complete_timeout)),
            max_utterance_ms=max(1000, min(params.recognition_timeout, 30_000)),
            # Speech resuming before the recognition's end timer fires continues the same
            # answer: decode it joined to what came before (hotword mode skips what does not
            # match, so there each utterance stands alone).
            join_within_ms=join_within_ms(params),
        )
        frames = tuple(preroll[i : i + FRAME_BYTES] for i in range(0, len(preroll), FRAME_BYTES))
        out: list[Output] = [
            self._reply(EventName.RECOGNITION_IN_PROGRESS, cmd, success=True),
            StartRecognizer(self._rec_counter, options, frames),
        ]
        out.extend(self._after(recognition.tick(session.now_ms)))
        return out

    def _start_input_timers(self, cmd: Command) -> list[Output]:
        session = self._require_session()
        active = self._active
        assert active is not None
        active.recognition.start_input_timers(session.now_ms)
        out: list[Output] = [self._reply(EventName.INPUT_TIMERS_STARTED, cmd)]
        out.extend(self._after(active.recognition.tick(session.now_ms)))
        return out

    def _stop(self, cmd: Command) -> list[Output]:
        out = self._end_recognition()
        out.append(self._reply(EventName.STOPPED, cmd))
        return out

    def _close(self, cmd: Command) -> list[Output]:
        out: list[Output] = []
        if self._active is not None:
            out.extend(self._end_recognition(SessionState.NO_SESSION))
        else:
            self._set_state(SessionState.NO_SESSION)
        out.append(self._reply(EventName.CLOSED, cmd))
        out.append(self._drop_session())
        return out

    _HANDLERS: Final[Mapping[CommandName, Callable[[H2BEngine, Command], list[Output]]]] = {
        CommandName.OPEN: _open,
        CommandName.SET_PARAMS: _set_params,
        CommandName.GET_PARAMS: _get_params,
        CommandName.DEFINE_GRAMMAR: _define_grammar,
        CommandName.RECOGNIZE: _recognize,
        CommandName.START_INPUT_TIMERS: _start_input_timers,
        CommandName.STOP: _stop,
        CommandName.CLOSE: _close,
    }

    # -- session helpers -----------------------------------------------------------------------

    def _require_session(self) -> _Session:
        session = self._session
        if session is None:  # pragma: no cover - guarded by LEGAL_COMMANDS
            raise IllegalTransition("command handler without a session")
        return session

    def _end_recognition(self, to: SessionState = SessionState.IDLE) -> list[Output]:
        active, self._active = self._active, None
        if active is None:  # pragma: no cover - guarded by LEGAL_COMMANDS
            return []
        self._set_state(to)
        return [StopRecognizer(active.rec_id)]

    def _drop_session(self) -> SessionEnded:
        session = self._require_session()
        self._session = None
        return SessionEnded(
            SessionRecord(
                channel_id=session.channel_id,
                custom_id=session.custom_id,
                session_id=session.session_id,
                audio_codec=str(session.decoder.codec),
                opened_ms=session.opened_ms,
                closed_ms=self._epoch_ms(),
                recognitions=session.recognitions,
                recognized_ms=session.recognized_samples // _SAMPLES_PER_MS,
            )
        )

    def _after(self, events: list[H2BEvent]) -> list[Output]:
        """Wrap recognition events; end the recognition once it completed."""
        out: list[Output] = [Send(e) for e in events]
        active = self._active
        if active is not None and active.recognition.done:
            out.extend(self._end_recognition())
        return out

    def connection_lost(self) -> list[Output]:
        """The socket is gone: drop the session silently (accounting record only)."""
        out: list[Output] = []
        if self._active is not None:
            out.extend(self._end_recognition(SessionState.NO_SESSION))
        elif self._session is not None:
            self._set_state(SessionState.NO_SESSION)
        if self._session is not None:
            out.append(self._drop_session())
        return out

    # -- audio ---------------------------------------------------------------------------------

    def handle_audio(self, chunk: bytes) -> list[Output]:
        """One binary frame: dropped outside a session, else decoded onto the audio clock."""
        session = self._session
        if session is None:
            return []
        return self._feed_pcm(session, session.decoder.decode(chunk))

    def handle_silence(self, ms: int) -> list[Output]:
        """``ms`` of wall time without audio, counted as silence (h2b.md §2)."""
        session = self._session
        if session is None or ms <= 0:
            return []
        return self._feed_pcm(session, bytes(ms * _SAMPLES_PER_MS * BYTES_PER_SAMPLE))

    def _feed_pcm(self, session: _Session, pcm: bytes) -> list[Output]:
        out: list[Output] = []
        view = memoryview(pcm)
        while len(view):
            active = self._active
            if active is None:
                session.preroll.push(bytes(view))
                session.samples += len(view) // BYTES_PER_SAMPLE
                break
            deadline = active.recognition.next_deadline_ms()
            take = len(view)
            if deadline is not None:
                due = max(0, deadline * _SAMPLES_PER_MS - session.samples) * BYTES_PER_SAMPLE
                take = min(take, due)
            if take:
                piece = bytes(view[:take])
                view = view[take:]
                session.samples += take // BYTES_PER_SAMPLE
                session.recognized_samples += take // BYTES_PER_SAMPLE
                frames = active.assembler.push(piece)
                if frames:
                    out.append(PushAudio(active.rec_id, tuple(frames)))
            out.extend(self._after(active.recognition.tick(session.now_ms)))
        return out

    # -- recognizer events ---------------------------------------------------------------------

    def handle_recognizer(self, rec_id: int, event: RecognitionEvent) -> list[Output]:
        """An event of speech session ``rec_id`` (stale sessions are ignored)."""
        active = self._active
        session = self._session
        if active is None or session is None or active.rec_id != rec_id:
            return []
        rec = active.recognition
        base = active.base_ms
        events: list[H2BEvent]
        if isinstance(event, SpeechStarted):
            events = rec.speech_started(base + event.time_ms)
        elif isinstance(event, SpeechEnded):
            rec.speech_ended(base + event.time_ms)
            events = []
        elif isinstance(event, FinalResult):
            alts = tuple((a.transcript, a.confidence) for a in event.nbest)
            segment = Segment(
                event.transcript,
                event.confidence,
                base + event.start_ms,
                base + event.end_ms,
                alts or ((event.transcript, event.confidence),),
            )
            events = rec.result(segment, session.now_ms)
        elif isinstance(event, NoMatch):
            segment = Segment(event.transcript, 0.0, base + event.start_ms, base + event.end_ms)
            events = rec.result(segment, session.now_ms)
        elif isinstance(event, RecognitionError):
            events = rec.error(event.message)
        else:  # Interim: not reported by H2B
            events = []
        return self._after(events)

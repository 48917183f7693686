"""Typed payloads of the ``babelforce.v1`` catalog: 10 operations, 9 events (RTVBP spec §3).

Each payload is a frozen dataclass built from a declarative field table (:class:`Field`), so
validation and serialisation follow one rule set:

* presence classes (§3): ``req`` must be present and not ``null``; ``opt`` may be absent (and
  ``null`` is read as absent); ``null`` (req-null) is always present and may be ``null``;
* integers are exact (no floats, no bools, no ``-0``, at most ±2^53), ``nonzero`` integers
  reject 0, ``minimum`` bounds are checked, strings honour ``min_len`` (§2.2, §7);
* output keeps the table's declaration order; free-form maps (``metadata``, ``session.set``
  data, the ``session.get`` result, ``ping`` data) are written with keys sorted, recursively,
  as the deployed Go peer does (§2.1). Floats use Go's spelling (:mod:`callbridge.rtvbp.wire`).

Validation errors name the JSON path and the rule: ``$.t0: must be non-zero`` — the message of
the 400 response a session sends for bad params (§2.3).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar

from callbridge.rtvbp.envelope import ABSENT
from callbridge.rtvbp.wire import MAX_SAFE_INTEGER, JsonDecodeError, dumps, loads

__all__ = [
    "ABSENT",
    "EVENTS",
    "L16_8000_1",
    "OPERATIONS",
    "SCHEMAS",
    "TERMINATE_REJECTION",
    "ValidationError",
    "decode_payload",
    "parse_payload",
]

Kind = Literal["str", "int", "float", "map", "any", "strlist", "model", "modellist"]
Presence = Literal["req", "opt", "null"]


class ValidationError(ValueError):
    """A payload breaks a catalog rule; the message is ``<json path>: <rule>``."""


class PayloadDecodeError(ValueError):
    """The payload text is not JSON (vector error class ``decode``)."""


@dataclass(frozen=True, slots=True)
class Field:
    """One field of a payload: wire name, Python attribute, type and rules."""

    wire: str
    kind: Kind
    presence: Presence = "req"
    attr: str | None = None
    nonzero: bool = False
    minimum: int | None = None
    min_len: int | None = None
    model: type[Payload] | None = None

    @property
    def name(self) -> str:
        return self.attr or self.wire


P = TypeVar("P", bound="Payload")


def _sorted_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted_json(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted_json(v) for v in value]
    return value


def _check_int(value: Any, path: str, f: Field) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{path}: must be an integer")
    if abs(value) > MAX_SAFE_INTEGER:
        raise ValidationError(f"{path}: must be within ±2^53")
    if f.nonzero and value == 0:
        raise ValidationError(f"{path}: must be non-zero")
    if f.minimum is not None and value < f.minimum:
        raise ValidationError(f"{path}: must be >= {f.minimum}")
    return value


def _check_value(value: Any, path: str, f: Field) -> Any:
    if f.kind == "str":
        if not isinstance(value, str):
            raise ValidationError(f"{path}: must be a string")
        if f.min_len is not None and len(value) < f.min_len:
            raise ValidationError(f"{path}: must be at least {f.min_len} character(s) long")
        return value
    if f.kind == "int":
        return _check_int(value, path, f)
    if f.kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValidationError(f"{path}: must be a number")
        return float(value)
    if f.kind == "map":
        if not isinstance(value, dict):
            raise ValidationError(f"{path}: must be an object")
        return value
    if f.kind == "strlist":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValidationError(f"{path}: must be an array of strings")
        return tuple(value)
    if f.kind == "model":
        assert f.model is not None
        return f.model.from_json(value, path)
    if f.kind == "modellist":
        assert f.model is not None
        if not isinstance(value, list):
            raise ValidationError(f"{path}: must be an array")
        return tuple(f.model.from_json(v, f"{path}[{i}]") for i, v in enumerate(value))
    return value  # "any"


def _to_wire(value: Any, f: Field) -> Any:
    if value is None:
        return None
    if f.kind in ("model",):
        return value.to_json()
    if f.kind == "modellist":
        return [v.to_json() for v in value]
    if f.kind == "strlist":
        return list(value)
    if f.kind in ("map", "any"):
        return _sorted_json(value)
    return value


class Payload:
    """Base of every catalog payload: ``from_json`` validates, ``to_json`` serialises."""

    FIELDS: ClassVar[tuple[Field, ...]] = ()
    SCHEMA: ClassVar[str] = ""

    @classmethod
    def from_json(cls: type[P], value: Any, path: str = "$") -> P:
        """Validate a decoded JSON value (``ABSENT``/``None`` read as ``{}``)."""
        if value is ABSENT or value is None:
            value = {}
        if not isinstance(value, dict):
            raise ValidationError(f"{path}: must be an object")
        kwargs: dict[str, Any] = {}
        for f in cls.FIELDS:
            sub = f"{path}.{f.wire}"
            present = f.wire in value
            item = value.get(f.wire)
            if f.presence == "req":
                if item is None:
                    raise ValidationError(f"{sub}: is required")
                kwargs[f.name] = _check_value(item, sub, f)
            elif f.presence == "null":
                if not present:
                    raise ValidationError(f"{sub}: is required (may be null)")
                kwargs[f.name] = None if item is None else _check_value(item, sub, f)
            elif f.kind == "any":
                kwargs[f.name] = _check_value(item, sub, f) if present else ABSENT
            else:
                kwargs[f.name] = None if item is None else _check_value(item, sub, f)
        obj = cls(**kwargs)
        obj.check(path)
        return obj

    def check(self, path: str) -> None:
        """Cross-field rules (overridden where the catalog has them)."""

    def to_json(self) -> Any:
        """The wire value: fields in declaration order, absent optionals omitted."""
        out: dict[str, Any] = {}
        for f in self.FIELDS:
            value = getattr(self, f.name)
            if f.presence == "opt" and (value is ABSENT or (value is None and f.kind != "any")):
                continue
            out[f.wire] = _to_wire(value, f)
        return out

    def to_text(self) -> str:
        return dumps(self.to_json())

    def validate(self) -> None:
        """Re-validate a locally built payload (raises :class:`ValidationError`)."""
        type(self).from_json(loads(self.to_text()))


# -- shared types (§3.1) ----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AudioCodec(Payload):
    id: str
    name: str
    sample_rate: int
    bit_depth: int
    channels: int
    SCHEMA = "AudioCodec"
    FIELDS = (
        Field("id", "str"),
        Field("name", "str"),
        Field("sample_rate", "int"),
        Field("bit_depth", "int"),
        Field("channels", "int"),
    )


#: The only codec callbridge offers in the first release (§4).
L16_8000_1 = AudioCodec("L16/8000/1", "L16", 8000, 16, 1)


@dataclass(frozen=True, slots=True)
class CallInfo(Payload):
    id: str
    session_id: str
    from_: str
    to: str
    SCHEMA = "CallInfo"
    FIELDS = (
        Field("id", "str"),
        Field("session_id", "str"),
        Field("from", "str", attr="from_"),
        Field("to", "str"),
    )


@dataclass(frozen=True, slots=True)
class AppInfo(Payload):
    id: str
    SCHEMA = "AppInfo"
    FIELDS = (Field("id", "str"),)


@dataclass(frozen=True, slots=True)
class EmptyResponse(Payload):
    SCHEMA = "EmptyResponse"


@dataclass(frozen=True, slots=True)
class AudioInfoItem(Payload):
    bytes: int
    bytes_per_second: float
    bytes_total: int
    SCHEMA = "AudioInfoItem"
    FIELDS = (
        Field("bytes", "int"),
        Field("bytes_per_second", "float"),
        Field("bytes_total", "int"),
    )


# -- operations (§3.2) ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SessionInitializeRequest(Payload):
    application: AppInfo
    call: CallInfo
    audio_codec_offerings: tuple[AudioCodec, ...]
    metadata: dict[str, Any] | None
    SCHEMA = "SessionInitializeRequest"
    FIELDS = (
        Field("application", "model", model=AppInfo),
        Field("call", "model", model=CallInfo),
        Field("audio_codec_offerings", "modellist", model=AudioCodec),
        Field("metadata", "map", "null"),
    )


@dataclass(frozen=True, slots=True)
class SessionInitializeResponse(Payload):
    audio_codec: AudioCodec | None
    SCHEMA = "SessionInitializeResponse"
    FIELDS = (Field("audio_codec", "model", "null", model=AudioCodec),)


@dataclass(frozen=True, slots=True)
class SessionTerminateRequest(Payload):
    reason: str
    SCHEMA = "SessionTerminateRequest"
    FIELDS = (Field("reason", "str", min_len=1),)


@dataclass(frozen=True, slots=True)
class PingRequest(Payload):
    t0: int
    rtt: int | None = None
    data: Any = ABSENT
    SCHEMA = "PingRequest"
    FIELDS = (
        Field("t0", "int", nonzero=True),
        Field("rtt", "int", "opt"),
        Field("data", "any", "opt"),
    )


@dataclass(frozen=True, slots=True)
class PingResponse(Payload):
    t0: int
    t1: int
    t2: int
    owd: int
    data: Any = ABSENT
    SCHEMA = "PingResponse"
    FIELDS = (
        Field("t0", "int", nonzero=True),
        Field("t1", "int", nonzero=True),
        Field("t2", "int", nonzero=True),
        Field("owd", "int"),
        Field("data", "any", "opt"),
    )


@dataclass(frozen=True, slots=True)
class ApplicationMoveRequest(Payload):
    reason: str | None = None
    application_id: str | None = None
    SCHEMA = "ApplicationMoveRequest"
    FIELDS = (Field("reason", "str", "opt"), Field("application_id", "str", "opt"))


@dataclass(frozen=True, slots=True)
class ApplicationMoveResponse(Payload):
    next_application_id: str | None = None
    SCHEMA = "ApplicationMoveResponse"
    FIELDS = (Field("next_application_id", "str", "opt"),)


@dataclass(frozen=True, slots=True)
class CallHangupRequest(Payload):
    reason: str
    SCHEMA = "CallHangupRequest"
    FIELDS = (Field("reason", "str", min_len=1),)


@dataclass(frozen=True, slots=True)
class AudioBufferClearRequest(Payload):
    SCHEMA = "AudioBufferClearRequest"


@dataclass(frozen=True, slots=True)
class AudioBufferClearResponse(Payload):
    len: int
    SCHEMA = "AudioBufferClearResponse"
    FIELDS = (Field("len", "int"),)


@dataclass(frozen=True, slots=True)
class SessionSetRequest(Payload):
    data: dict[str, Any]
    SCHEMA = "SessionSetRequest"
    FIELDS = (Field("data", "map"),)


@dataclass(frozen=True, slots=True)
class SessionGetRequest(Payload):
    keys: tuple[str, ...]
    SCHEMA = "SessionGetRequest"
    FIELDS = (Field("keys", "strlist"),)


@dataclass(frozen=True, slots=True)
class SessionGetResponse(Payload):
    """The bare open map ``{key: value}`` (not wrapped), written with sorted keys."""

    values: dict[str, Any]
    SCHEMA = "SessionGetResponse"

    @classmethod
    def from_json(cls, value: Any, path: str = "$") -> SessionGetResponse:
        if value is ABSENT or value is None:
            value = {}
        if not isinstance(value, dict):
            raise ValidationError(f"{path}: must be an object")
        return cls(dict(value))

    def to_json(self) -> Any:
        return _sorted_json(self.values)


@dataclass(frozen=True, slots=True)
class RecordingStartRequest(Payload):
    tags: tuple[str, ...] | None = None
    SCHEMA = "RecordingStartRequest"
    FIELDS = (Field("tags", "strlist", "opt"),)


@dataclass(frozen=True, slots=True)
class RecordingStartResponse(Payload):
    id: str
    SCHEMA = "RecordingStartResponse"
    FIELDS = (Field("id", "str", min_len=1),)


@dataclass(frozen=True, slots=True)
class RecordingStopRequest(Payload):
    id: str
    SCHEMA = "RecordingStopRequest"
    FIELDS = (Field("id", "str", min_len=1),)


# -- events (§3.3) ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SessionUpdatedEvent(Payload):
    audio_codec: AudioCodec | None
    SCHEMA = "SessionUpdatedEvent"
    FIELDS = (Field("audio_codec", "model", "null", model=AudioCodec),)


@dataclass(frozen=True, slots=True)
class DtmfEvent(Payload):
    seq: int
    pressed_at: int
    released_at: int
    digit: str
    SCHEMA = "DtmfEvent"
    FIELDS = (
        Field("seq", "int", minimum=0),
        Field("pressed_at", "int", minimum=0),
        Field("released_at", "int", minimum=0),
        Field("digit", "str", min_len=1),
    )

    def check(self, path: str) -> None:
        if self.released_at < self.pressed_at:
            raise ValidationError(f"{path}.released_at: must be >= pressed_at")


@dataclass(frozen=True, slots=True)
class CallHangupEvent(Payload):
    reason: str | None = None
    SCHEMA = "CallHangupEvent"
    FIELDS = (Field("reason", "str", "opt"),)


@dataclass(frozen=True, slots=True)
class AudioInfoEvent(Payload):
    read: AudioInfoItem
    write: AudioInfoItem
    SCHEMA = "AudioInfoEvent"
    FIELDS = (
        Field("read", "model", model=AudioInfoItem),
        Field("write", "model", model=AudioInfoItem),
    )


@dataclass(frozen=True, slots=True)
class AudioSpeechStartedEvent(Payload):
    origin: str
    SCHEMA = "AudioSpeechStartedEvent"
    FIELDS = (Field("origin", "str"),)


@dataclass(frozen=True, slots=True)
class InputTranscriptEvent(Payload):
    delta: str
    SCHEMA = "InputTranscriptEvent"
    FIELDS = (Field("delta", "str"),)


@dataclass(frozen=True, slots=True)
class OutputTranscriptDeltaEvent(Payload):
    delta: str
    SCHEMA = "OutputTranscriptDeltaEvent"
    FIELDS = (Field("delta", "str"),)


@dataclass(frozen=True, slots=True)
class OutputTranscriptDoneEvent(Payload):
    """``text`` absent keeps the accumulated deltas; ``""`` is legal and distinct."""

    text: str | None = None
    SCHEMA = "OutputTranscriptDoneEvent"
    FIELDS = (Field("text", "str", "opt"),)


@dataclass(frozen=True, slots=True)
class AgentToolCallEvent(Payload):
    name: str
    SCHEMA = "AgentToolCallEvent"
    FIELDS = (Field("name", "str"),)


# -- the catalog tables -----------------------------------------------------------------------
Role = Literal["voice", "application"]


@dataclass(frozen=True, slots=True)
class Operation:
    """One catalog operation: who handles it, whether it ends the session, its payloads."""

    method: str
    handled_by: frozenset[Role]
    terminal: bool
    request: type[Payload]
    response: type[Payload]


@dataclass(frozen=True, slots=True)
class EventSpec:
    name: str
    emitted_by: Role
    data: type[Payload]


_VOICE: frozenset[Role] = frozenset({"voice"})
_APP: frozenset[Role] = frozenset({"application"})
_BOTH: frozenset[Role] = frozenset({"voice", "application"})

OPERATIONS: Mapping[str, Operation] = {
    op.method: op
    for op in (
        Operation(
            "session.initialize", _APP, False, SessionInitializeRequest, SessionInitializeResponse
        ),
        Operation("session.terminate", _APP, True, SessionTerminateRequest, EmptyResponse),
        Operation("ping", _BOTH, False, PingRequest, PingResponse),
        Operation(
            "application.move", _VOICE, True, ApplicationMoveRequest, ApplicationMoveResponse
        ),
        Operation("call.hangup", _VOICE, True, CallHangupRequest, EmptyResponse),
        Operation(
            "audio.buffer.clear", _VOICE, False, AudioBufferClearRequest, AudioBufferClearResponse
        ),
        Operation("session.set", _VOICE, False, SessionSetRequest, EmptyResponse),
        Operation("session.get", _VOICE, False, SessionGetRequest, SessionGetResponse),
        Operation("recording.start", _VOICE, False, RecordingStartRequest, RecordingStartResponse),
        Operation("recording.stop", _VOICE, False, RecordingStopRequest, EmptyResponse),
    )
}

EVENTS: Mapping[str, EventSpec] = {
    ev.name: ev
    for ev in (
        EventSpec("session.updated", "voice", SessionUpdatedEvent),
        EventSpec("dtmf", "voice", DtmfEvent),
        EventSpec("call.hangup", "voice", CallHangupEvent),
        EventSpec("audio.info", "voice", AudioInfoEvent),
        EventSpec("audio.speech.started", "application", AudioSpeechStartedEvent),
        EventSpec("input.transcript", "application", InputTranscriptEvent),
        EventSpec("output.transcript.delta", "application", OutputTranscriptDeltaEvent),
        EventSpec("output.transcript.done", "application", OutputTranscriptDoneEvent),
        EventSpec("agent.tool.call", "application", AgentToolCallEvent),
    )
}

#: The frozen rejection of a reverse ``session.terminate`` by the voice role (§2.3).
TERMINATE_REJECTION = (
    501,
    "session.terminate is not supported. please use application.move or call.hangup instead",
)

_ALL_TYPES: tuple[type[Payload], ...] = (
    AudioCodec,
    CallInfo,
    AppInfo,
    EmptyResponse,
    AudioInfoItem,
    *{op.request for op in OPERATIONS.values()},
    *{op.response for op in OPERATIONS.values()},
    *(ev.data for ev in EVENTS.values()),
)
#: Payload classes by schema name (as in ``manifests/babelforce.v1.catalog.json``).
SCHEMAS: Mapping[str, type[Payload]] = {t.SCHEMA: t for t in _ALL_TYPES}


def parse_payload(schema: str, value: Any) -> Payload:
    """Validate an already decoded JSON value against the named schema."""
    return SCHEMAS[schema].from_json(value)


def decode_payload(schema: str, text: str) -> Payload:
    """Decode payload text: :class:`PayloadDecodeError` or :class:`ValidationError` on failure."""
    try:
        value = loads(text)
    except JsonDecodeError as exc:
        raise PayloadDecodeError(str(exc)) from None
    return parse_payload(schema, value)


def replace(payload: P, **changes: Any) -> P:
    """A copy of ``payload`` with ``changes`` (dataclasses.replace, typed)."""
    return dataclasses.replace(payload, **changes)  # type: ignore[type-var]

"""The ``classic.v1`` envelope codec (RTVBP spec §2).

One control message is one flat JSON object in one WebSocket text message, ``"version":"1"``.
Three kinds, told apart by their discriminator with the structural precedence
**event → request → response** (§2.2):

=========  ==================  ==================  ===============  ===========
kind       discriminator       id                  payload key      extra
=========  ==================  ==================  ===============  ===========
event      ``event`` (name)    ``id`` (required)   ``data``         —
request    ``method`` (name)   ``id`` (required)   ``params``       —
response   ``response`` (id)   —                   ``result``       ``error``
=========  ==================  ==================  ===============  ===========

A payload that is absent on the wire is :data:`ABSENT` here, distinct from JSON ``null``
(``None``), so both spellings round-trip unchanged (§2.3). Unknown keys are ignored. A frame
that cannot be decoded raises :class:`EnvelopeError`; the session drops and counts it (§2.2).
The error object's extra data is ``data`` in the model and ``any`` on the wire (§2.3).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Final

from callbridge.rtvbp.wire import JsonDecodeError, dumps, loads

__all__ = [
    "ABSENT",
    "VERSION",
    "Absent",
    "EnvelopeError",
    "ErrorObject",
    "Event",
    "Frame",
    "Request",
    "Response",
    "decode",
    "encode",
]

#: The only envelope version (§2): a JSON *string*.
VERSION: Final = "1"


class Absent(enum.Enum):
    """Marker type of a key that is not on the wire (as opposed to JSON ``null``)."""

    ABSENT = "absent"

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Final = Absent.ABSENT


class EnvelopeError(ValueError):
    """A text frame is not a valid ``classic.v1`` message; the reason is the message."""


@dataclass(frozen=True, slots=True)
class ErrorObject:
    """A response error: ``code`` non-zero, ``message`` non-empty, optional extra ``data``."""

    code: int
    message: str
    data: Any = ABSENT

    def __post_init__(self) -> None:
        if isinstance(self.code, bool) or not isinstance(self.code, int) or self.code == 0:
            raise EnvelopeError("error.code must be a non-zero integer")
        if not isinstance(self.message, str) or not self.message:
            raise EnvelopeError("error.message must be a non-empty string")

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not ABSENT:
            out["any"] = self.data
        return out


@dataclass(frozen=True, slots=True)
class Request:
    id: str
    method: str
    params: Any = ABSENT


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    event: str
    data: Any = ABSENT


@dataclass(frozen=True, slots=True)
class Response:
    """``response`` is the id of the request answered. ``error`` wins over ``result``."""

    response: str
    result: Any = ABSENT
    error: ErrorObject | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


Frame = Request | Event | Response


def encode(frame: Frame) -> str:
    """The exact wire text of ``frame`` (key order of §2.1)."""
    out: dict[str, Any] = {"version": VERSION}
    if isinstance(frame, Request):
        out["id"] = frame.id
        out["method"] = frame.method
        if frame.params is not ABSENT:
            out["params"] = frame.params
    elif isinstance(frame, Event):
        out["id"] = frame.id
        out["event"] = frame.event
        if frame.data is not ABSENT:
            out["data"] = frame.data
    else:
        out["response"] = frame.response
        if frame.result is not ABSENT:
            out["result"] = frame.result
        if frame.error is not None:
            out["error"] = frame.error.to_wire()
    return dumps(out)


def _name(obj: dict[str, Any], key: str) -> str | None:
    value = obj.get(key)
    return value if isinstance(value, str) and value else None


def _id(obj: dict[str, Any], kind: str) -> str:
    value = obj.get("id")
    if not isinstance(value, str) or not value:
        raise EnvelopeError(f"{kind} needs a non-empty string 'id'")
    return value


def _error(value: Any) -> ErrorObject | None:
    if value is None:
        return None  # "error": null means no error (§2.2)
    if not isinstance(value, dict):
        raise EnvelopeError("'error' must be an object")
    code = value.get("code")
    if isinstance(code, bool) or not isinstance(code, int) or code == 0:
        raise EnvelopeError("error.code must be a non-zero integer")
    message = value.get("message")
    if not isinstance(message, str) or not message:
        raise EnvelopeError("error.message must be a non-empty string")
    return ErrorObject(code, message, value.get("any", ABSENT))


def decode(text: str | bytes) -> Frame:
    """Parse one text message; raise :class:`EnvelopeError` saying why it is not a frame."""
    try:
        obj = loads(text)
    except JsonDecodeError as exc:
        raise EnvelopeError(str(exc)) from None
    if not isinstance(obj, dict):
        raise EnvelopeError("a frame is a JSON object")
    if obj.get("version") != VERSION:
        raise EnvelopeError('"version" must be the string "1"')
    if (name := _name(obj, "event")) is not None:
        return Event(_id(obj, "event"), name, obj.get("data", ABSENT))
    if (name := _name(obj, "method")) is not None:
        return Request(_id(obj, "request"), name, obj.get("params", ABSENT))
    if (ref := _name(obj, "response")) is not None:
        return Response(ref, obj.get("result", ABSENT), _error(obj.get("error")))
    raise EnvelopeError("no 'event', 'method' or 'response' discriminator")

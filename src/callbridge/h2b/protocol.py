"""The Stream H2B wire format (h2b.md §3–§6): command parsing and event serialization.

Strict in what we send, lenient in what we accept:

* :func:`parse_command` turns one text frame into a :class:`Command` or, for anything it cannot
  accept, the error :class:`H2BEvent` to answer with (``METHOD-NOT-VALID``, request id ``0``
  when the id itself is unusable). It never raises for any input.
* :class:`H2BEvent` always serializes the seven keys in the SDK's order, an ``int``
  ``request_id``, an event name from :class:`EventName` and a cause from
  :class:`CompletionCause` — the closed sets the ``uhlive`` SDK parses.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = [
    "MAX_COMMAND_BYTES",
    "MAX_REQUEST_ID",
    "Command",
    "CommandName",
    "CompletionCause",
    "EventName",
    "H2BEvent",
    "parse_command",
]

#: Largest accepted text command (h2b.md §1).
MAX_COMMAND_BYTES: Final = 64 * 1024
#: Largest accepted request id (JSON numbers beyond 2**53 are not portable).
MAX_REQUEST_ID: Final = 2**53


class CommandName(enum.StrEnum):
    """The eight client commands (h2b.md §3.1)."""

    OPEN = "OPEN"
    SET_PARAMS = "SET-PARAMS"
    GET_PARAMS = "GET-PARAMS"
    DEFINE_GRAMMAR = "DEFINE-GRAMMAR"
    RECOGNIZE = "RECOGNIZE"
    START_INPUT_TIMERS = "START-INPUT-TIMERS"
    STOP = "STOP"
    CLOSE = "CLOSE"


class EventName(enum.StrEnum):
    """The 15 event names of the SDK's ``EVENT_MAP`` (h2b.md §4.1); nothing else is sent."""

    OPENED = "OPENED"
    PARAMS_SET = "PARAMS-SET"
    DEFAULT_PARAMS = "DEFAULT-PARAMS"
    GRAMMAR_DEFINED = "GRAMMAR-DEFINED"
    RECOGNITION_IN_PROGRESS = "RECOGNITION-IN-PROGRESS"
    INPUT_TIMERS_STARTED = "INPUT-TIMERS-STARTED"
    STOPPED = "STOPPED"
    CLOSED = "CLOSED"
    START_OF_INPUT = "START-OF-INPUT"
    RECOGNITION_COMPLETE = "RECOGNITION-COMPLETE"
    METHOD_NOT_VALID = "METHOD-NOT-VALID"
    METHOD_FAILED = "METHOD-FAILED"
    INVALID_PARAM_VALUE = "INVALID-PARAM-VALUE"
    MISSING_PARAM = "MISSING-PARAM"
    METHOD_NOT_ALLOWED = "METHOD-NOT-ALLOWED"


class CompletionCause(enum.StrEnum):
    """The SDK's 12 completion causes (h2b.md §5); no other value is ever sent."""

    SUCCESS = "Success"
    NO_MATCH = "NoMatch"
    NO_INPUT_TIMEOUT = "NoInputTimeout"
    HOTWORD_MAXTIME = "HotwordMaxtime"
    GRAM_LOAD_FAILURE = "GramLoadFailure"
    ERROR = "Error"
    SUCCESS_MAXTIME = "SuccessMaxtime"
    LANGUAGE_UNSUPPORTED = "LanguageUnsupported"
    PARTIAL_MATCH = "PartialMatch"
    PARTIAL_MATCH_MAXTIME = "PartialMatchMaxtime"
    NO_MATCH_MAXTIME = "NoMatchMaxtime"
    GRAM_DEFINITION_FAILURE = "GramDefinitionFailure"


@dataclass(frozen=True, slots=True)
class H2BEvent:
    """One server → client event; :meth:`to_json` is the text frame."""

    event: EventName
    request_id: int
    channel_id: str = ""
    headers: Mapping[str, Any] = field(default_factory=dict)
    completion_cause: CompletionCause | None = None
    completion_reason: str | None = None
    body: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The seven keys in the SDK's order (``body`` is ``""`` unless a RecogResult)."""
        return {
            "event": str(self.event),
            "request_id": int(self.request_id),
            "channel_id": self.channel_id,
            "headers": dict(self.headers),
            "completion_cause": (
                None if self.completion_cause is None else str(self.completion_cause)
            ),
            "completion_reason": self.completion_reason,
            "body": "" if self.body is None else dict(self.body),
        }

    def to_json(self) -> str:
        """Compact JSON with raw UTF-8, as the SDK writes its own frames."""
        return json.dumps(
            self.to_dict(), ensure_ascii=False, separators=(",", ":"), allow_nan=False
        )


@dataclass(frozen=True, slots=True)
class Command:
    """A parsed client command (h2b.md §3)."""

    name: CommandName
    request_id: int
    channel_id: str
    headers: Mapping[str, Any]
    body: str


def _invalid(reason: str, request_id: int = 0, channel_id: str = "") -> H2BEvent:
    return H2BEvent(EventName.METHOD_NOT_VALID, request_id, channel_id, completion_reason=reason)


def _request_id(value: object) -> int | None:
    """An int, or an int-convertible string, within [0, 2**53]; else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and 0 < len(value) <= 20:
        try:
            number = int(value.strip())
        except ValueError:
            return None
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    else:
        return None
    return number if 0 <= number <= MAX_REQUEST_ID else None


def parse_command(text: str | bytes, channel_id: str = "") -> Command | H2BEvent:
    """Parse one text frame; ``channel_id`` is echoed on the error events.

    Returns the :class:`Command`, or the ``METHOD-NOT-VALID`` event to send. Never raises.
    """
    if isinstance(text, bytes):
        if len(text) > MAX_COMMAND_BYTES:
            return _invalid(f"command larger than {MAX_COMMAND_BYTES} bytes", 0, channel_id)
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            return _invalid("command is not valid UTF-8", 0, channel_id)
    if len(text) > MAX_COMMAND_BYTES or len(text.encode("utf-8", "replace")) > MAX_COMMAND_BYTES:
        return _invalid(f"command larger than {MAX_COMMAND_BYTES} bytes", 0, channel_id)
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return _invalid("malformed JSON", 0, channel_id)
    if not isinstance(data, dict):
        return _invalid("a command must be a JSON object", 0, channel_id)
    request_id = _request_id(data.get("request_id"))
    if request_id is None:
        return _invalid("request_id must be a non-negative integer", 0, channel_id)
    name = data.get("command")
    if not isinstance(name, str) or not name:
        return _invalid("command is required", request_id, channel_id)
    try:
        command = CommandName(name.strip().upper())
    except ValueError:
        return _invalid(f"unknown command {name[:64]!r}", request_id, channel_id)
    chan = data.get("channel_id", "")
    if chan is None:
        chan = ""
    if not isinstance(chan, str):
        return _invalid("channel_id must be a string", request_id, channel_id)
    headers = data.get("headers", {})
    if headers is None:
        headers = {}
    if not isinstance(headers, dict):
        return _invalid("headers must be an object", request_id, channel_id)
    body = data.get("body", "")
    if body is None:
        body = ""
    if not isinstance(body, str):
        return _invalid("body must be a string", request_id, channel_id)
    return Command(command, request_id, chan, headers, body)

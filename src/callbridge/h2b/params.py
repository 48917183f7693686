"""Recognition parameters (h2b.md §7): the table, defaults, coercion and validation.

Values arrive loosely typed (the SDK passes ``**params`` through; one SDK tool sends numbers as
strings), so numeric strings are coerced and booleans accept ``"true"``/``"false"``. MRCP
kebab-case names and ``hotword_max_time`` are aliases. Unknown keys are ignored; one invalid
value rejects the whole command (:class:`ParamError` names the key).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Final

from callbridge.speech.grammars.base import GrammarError, region_of

__all__ = [
    "COMMAND_HEADERS",
    "PARAM_NAMES",
    "ParamError",
    "Params",
    "RecognitionMode",
    "apply_params",
]


class RecognitionMode(enum.StrEnum):
    """h2b.md §7.2."""

    NORMAL = "normal"
    HOTWORD = "hotword"


class ParamError(ValueError):
    """A header value is invalid: ``str(error)`` is ``<name>: <problem>``."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")
        self.name = name


@dataclass(frozen=True, slots=True)
class Params:
    """The parameters of a session (defaults) or of one RECOGNIZE (with its overrides)."""

    speech_language: str = "en"
    recognition_mode: RecognitionMode = RecognitionMode.NORMAL
    start_input_timers: bool = True
    no_input_timeout: int = 5000
    recognition_timeout: int = 20000
    speech_complete_timeout: int = 800
    speech_incomplete_timeout: int = 1500
    speech_nomatch_timeout: int = 3000
    hotword_max_duration: int = 10000
    confidence_threshold: float = 0.5
    n_best_list_length: int = 1
    logging_tag: str = ""

    def to_headers(self) -> dict[str, Any]:
        """Every parameter with its value, for ``DEFAULT-PARAMS``."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = str(value) if isinstance(value, enum.Enum) else value
        return out


#: Longest accepted timer (one hour of audio).
MAX_TIMEOUT_MS: Final = 3_600_000
_TRUE: Final = frozenset({"true", "1", "yes", "on"})
_FALSE: Final = frozenset({"false", "0", "no", "off"})


def _to_bool(name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        low = value.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
    raise ParamError(name, f"expected a boolean, got {_show(value)}")


def _to_number(name: str, value: object) -> float:
    if isinstance(value, bool):
        raise ParamError(name, f"expected a number, got {_show(value)}")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str) and len(value) <= 32:
        try:
            number = float(value.strip())
        except ValueError:
            raise ParamError(name, f"expected a number, got {_show(value)}") from None
    else:
        raise ParamError(name, f"expected a number, got {_show(value)}")
    if not math.isfinite(number):
        raise ParamError(name, "must be finite")
    return number


def _to_int(name: str, value: object, low: int, high: int) -> int:
    number = _to_number(name, value)
    if not number.is_integer():
        raise ParamError(name, f"expected an integer, got {_show(value)}")
    if not low <= number <= high:
        raise ParamError(name, f"must be between {low} and {high}, got {int(number)}")
    return int(number)


def _ms(name: str, value: object) -> int:
    return _to_int(name, value, 0, MAX_TIMEOUT_MS)


def _confidence(name: str, value: object) -> float:
    number = _to_number(name, value)
    if not 0.0 <= number <= 1.0:
        raise ParamError(name, f"must be between 0 and 1, got {number}")
    return number


def _nbest(name: str, value: object) -> int:
    return _to_int(name, value, 1, 10)


def _string(name: str, value: object, max_len: int = 256) -> str:
    if not isinstance(value, str):
        raise ParamError(name, f"expected a string, got {_show(value)}")
    if len(value) > max_len:
        raise ParamError(name, f"longer than {max_len} characters")
    return value


def _language(name: str, value: object) -> str:
    text = _string(name, value, 16).strip()
    try:
        region_of(text)
    except GrammarError:
        raise ParamError(name, f"malformed language tag {_show(value)}") from None
    return text


def _mode(name: str, value: object) -> RecognitionMode:
    text = _string(name, value, 16).strip().lower()
    try:
        return RecognitionMode(text)
    except ValueError:
        raise ParamError(name, f"must be 'normal' or 'hotword', got {_show(value)}") from None


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


_Coerce = Callable[[str, object], Any]

#: Canonical name → coercion.
_TABLE: Final[Mapping[str, _Coerce]] = {
    "speech_language": _language,
    "recognition_mode": _mode,
    "start_input_timers": _to_bool,
    "no_input_timeout": _ms,
    "recognition_timeout": _ms,
    "speech_complete_timeout": _ms,
    "speech_incomplete_timeout": _ms,
    "speech_nomatch_timeout": _ms,
    "hotword_max_duration": _ms,
    "confidence_threshold": _confidence,
    "n_best_list_length": _nbest,
    "logging_tag": _string,
}
PARAM_NAMES: Final = frozenset(_TABLE)
_ALIASES: Final = {"hotword_max_time": "hotword_max_duration"}
#: Command headers that are not parameters (validated by the engine, never stored).
COMMAND_HEADERS: Final = frozenset({"content_type", "content_id"})


def canonical(key: str) -> str:
    """The snake_case parameter name of ``key`` (kebab-case and aliases mapped)."""
    name = key.strip().lower().replace("-", "_")
    return _ALIASES.get(name, name)


def apply_params(base: Params, headers: Mapping[str, Any]) -> tuple[Params, list[str]]:
    """``base`` with the parameters of ``headers`` applied, and the ignored unknown keys.

    Raises :class:`ParamError` for the first invalid value; ``content_type`` must be
    ``text/uri-list`` when present.
    """
    changes: dict[str, Any] = {}
    unknown: list[str] = []
    for key, value in headers.items():
        name = canonical(str(key))
        if name == "content_type":
            if value != "text/uri-list":
                raise ParamError("content_type", f"must be 'text/uri-list', got {_show(value)}")
            continue
        if name in COMMAND_HEADERS:
            continue
        coerce = _TABLE.get(name)
        if coerce is None:
            unknown.append(str(key)[:64])
            continue
        changes[name] = coerce(name, value)
    return (replace(base, **changes) if changes else base), unknown
